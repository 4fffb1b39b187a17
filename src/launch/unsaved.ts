/**
 * A job runs the file as saved on disk: before launching, an open document
 * with unsaved changes is saved, or the user chooses to run the saved version.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { IDocumentManager } from '@jupyterlab/docmanager';
import type { TranslationBundle } from '@jupyterlab/translation';

import { basename } from '../format';

/** Save a dirty open document, or let the user decide. False = cancel. */
export async function ensureSaved(
  docManager: IDocumentManager | null,
  path: string,
  trans: TranslationBundle
): Promise<boolean> {
  const widget = docManager?.findWidget(path);
  const context = widget ? docManager?.contextForWidget(widget) : undefined;
  if (!context || !context.model.dirty) {
    return true;
  }
  const runSaved = trans.__('Run saved version');
  const result = await showDialog({
    title: trans.__('Unsaved changes'),
    body: trans.__(
      '"%1" has unsaved changes. The job runs the file as saved on disk.',
      basename(path)
    ),
    buttons: [
      Dialog.cancelButton({ label: trans.__('Cancel') }),
      Dialog.warnButton({ label: runSaved, displayType: 'default' }),
      Dialog.okButton({ label: trans.__('Save and run') })
    ]
  });
  if (result.button.label === runSaved) {
    return true;
  }
  if (!result.button.accept) {
    return false;
  }
  await context.save();
  return true;
}
