/**
 * Which file a run command is about: the file browser's selection, a
 * right-clicked tab's document, or the current document (server-local paths).
 */
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import type { Widget } from '@lumino/widgets';

import type { ICommandsOptions } from './context';

export interface IFileTargets {
  /** The file browser's single selected file, if any. */
  selectedFile(): string | null;
  /** The document of a right-clicked tab (`fromTab`) or of the current tab. */
  currentPath(args: ReadonlyPartialJSONObject): string | null;
  /** A path as the server knows it (drive prefix removed). */
  localPath(path: string): string;
}

export function fileTargets(options: ICommandsOptions): IFileTargets {
  const { app, docManager } = options;
  const localPath = (path: string) =>
    app.serviceManager.contents.localPath(path);

  const selectedFile = (): string | null => {
    const browser =
      options.browserFactory?.tracker.currentWidget ?? options.fileBrowser;
    if (!browser) {
      return null;
    }
    const items = Array.from(browser.selectedItems());
    if (items.length !== 1 || items[0].type === 'directory') {
      return null;
    }
    return localPath(items[0].path);
  };

  /** The document widget a command is about (a right-clicked tab or the current one). */
  const targetWidget = (args: ReadonlyPartialJSONObject): Widget | null => {
    if (args.fromTab) {
      const node = app.contextMenuHitTest(
        n => n.classList.contains('lm-TabBar-tab') && !!n.dataset.id
      );
      if (node) {
        for (const widget of app.shell.widgets('main')) {
          if (widget.id === node.dataset.id) {
            return widget;
          }
        }
      }
    }
    return app.shell.currentWidget;
  };

  const currentPath = (args: ReadonlyPartialJSONObject): string | null => {
    const widget = targetWidget(args);
    const context =
      widget && docManager ? docManager.contextForWidget(widget) : undefined;
    return context ? localPath(context.path) : null;
  };

  return { selectedFile, currentPath, localPath };
}
