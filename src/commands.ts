/**
 * Every awsjobs command, registered once: buttons, menus, the palette and
 * the tests all run these.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import type { IDocumentManager } from '@jupyterlab/docmanager';
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import type {
  IDefaultFileBrowser,
  IFileBrowserFactory
} from '@jupyterlab/filebrowser';
import type { IStateDB } from '@jupyterlab/statedb';
import type { TranslationBundle } from '@jupyterlab/translation';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import type { Widget } from '@lumino/widgets';

import { CommandIDs } from './commandIds';
import { ApiError } from './handler';
import { basename, isNotebookPath, isSupportedPath } from './format';
import { jobsIcon } from './icons';
import { IJob, IJobsModel, IServerConfig, isActiveState } from './tokens';
import { formFromJob, ILaunchForm } from './validation';
import { showLaunchDialog } from './widgets/LaunchDialog';

export { CommandIDs };

/** IStateDB key of the last launch values. */
export const LAUNCH_STATE_KEY = 'awsjobs-lab:launch-form';

/** Id of the Jobs panel in the shell. */
export const PANEL_ID = 'awsjobs-panel';

/** A log larger than this asks before opening in the editor. */
const LARGE_LOG_BYTES = 50 * 1024 * 1024;

export interface ICommandsOptions {
  app: JupyterFrontEnd;
  model: IJobsModel;
  trans: TranslationBundle;
  docManager: IDocumentManager | null;
  fileBrowser: IDefaultFileBrowser | null;
  browserFactory: IFileBrowserFactory | null;
  state: IStateDB | null;
}

/** The remembered launch values (not the per-file ones). */
type RememberedForm = Pick<
  ILaunchForm,
  | 'backend'
  | 'memoryGib'
  | 'cpus'
  | 'spot'
  | 'maxLifetimeMinutes'
  | 'env'
  | 'instanceType'
>;

/** The configured backends the dialog may offer. */
export function offeredBackends(
  config: IServerConfig
): IServerConfig['backends'] {
  return config.backends.filter(b => b.configured);
}

/**
 * The dialog's starting values: the remembered ones, else the settings,
 * else the server's defaults.
 */
export function initialForm(
  model: IJobsModel,
  config: IServerConfig,
  remembered: Partial<RememberedForm> | null
): ILaunchForm {
  const s = model.settings;
  const ids = offeredBackends(config).map(b => b.id);
  const pick = (id: string | undefined) => (id && ids.includes(id) ? id : '');
  const backend =
    pick(remembered?.backend) ||
    pick(s.defaultBackend) ||
    pick(config.default_backend) ||
    ids[0] ||
    '';
  const d = config.defaults;
  return {
    backend,
    memoryGib:
      remembered?.memoryGib ?? String(s.memoryGib ?? d?.memory_gib ?? 4),
    cpus: remembered?.cpus ?? String(s.cpus ?? d?.cpus ?? 2),
    spot: remembered?.spot ?? s.spot ?? d?.spot ?? true,
    maxLifetimeMinutes:
      remembered?.maxLifetimeMinutes ??
      String(s.maxLifetimeMinutes ?? d?.max_lifetime_minutes ?? 240),
    logPath: '',
    parameters: '',
    env: remembered?.env ?? '',
    instanceType: remembered?.instanceType ?? ''
  };
}

export function registerCommands(options: ICommandsOptions): void {
  const { app, model, trans, docManager, state } = options;
  const { commands, shell } = app;
  const contents = app.serviceManager.contents;

  const localPath = (path: string) => contents.localPath(path);

  /** The arguments of a command acting on one job; `confirm` only where it is read. */
  const jobArgs = (withConfirm: boolean) => ({
    args: {
      type: 'object',
      properties: {
        id: {
          type: 'string',
          description: trans.__('The job id (default: the selected job)')
        },
        ...(withConfirm && {
          confirm: {
            type: 'boolean',
            description: trans.__('Ask for confirmation (default true)')
          }
        })
      }
    }
  });

  /** The file browser's single selected file, if any. */
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
        for (const widget of shell.widgets('main')) {
          if (widget.id === node.dataset.id) {
            return widget;
          }
        }
      }
    }
    return shell.currentWidget;
  };

  const documentContext = (
    widget: Widget | null
  ): DocumentRegistry.Context | undefined =>
    widget && docManager ? docManager.contextForWidget(widget) : undefined;

  const currentPath = (args: ReadonlyPartialJSONObject): string | null => {
    const context = documentContext(targetWidget(args));
    return context ? localPath(context.path) : null;
  };

  const jobArg = (args: ReadonlyPartialJSONObject): IJob | null => {
    const id = typeof args.id === 'string' ? args.id : model.selectedId;
    return id ? (model.get(id) ?? null) : null;
  };

  const openPanel = (id?: string) => {
    if (id) {
      model.select(id);
    }
    shell.activateById(PANEL_ID);
  };

  /** Save a dirty open document, or let the user decide. False = cancel. */
  const ensureSaved = async (path: string): Promise<boolean> => {
    if (!docManager) {
      return true;
    }
    const widget = docManager.findWidget(path);
    const context = documentContext(widget ?? null);
    if (!context || !context.model.dirty) {
      return true;
    }
    const result = await showDialog({
      title: trans.__('Unsaved changes'),
      body: trans.__(
        '"%1" has unsaved changes. The job runs the file as saved on disk.',
        basename(path)
      ),
      buttons: [
        Dialog.cancelButton({ label: trans.__('Cancel') }),
        Dialog.warnButton({
          label: trans.__('Run saved version'),
          displayType: 'default'
        }),
        Dialog.okButton({ label: trans.__('Save and run') })
      ]
    });
    if (result.button.label === trans.__('Run saved version')) {
      return true;
    }
    if (!result.button.accept) {
      return false;
    }
    await context.save();
    return true;
  };

  const remembered = async (): Promise<Partial<RememberedForm> | null> => {
    if (!state) {
      return null;
    }
    try {
      const value = await state.fetch(LAUNCH_STATE_KEY);
      return value && typeof value === 'object' && !Array.isArray(value)
        ? (value as Partial<RememberedForm>)
        : null;
    } catch {
      return null;
    }
  };

  const remember = async (form: ILaunchForm): Promise<void> => {
    if (!state) {
      return;
    }
    const value: RememberedForm = {
      backend: form.backend,
      memoryGib: form.memoryGib,
      cpus: form.cpus,
      spot: form.spot,
      maxLifetimeMinutes: form.maxLifetimeMinutes,
      env: form.env,
      instanceType: form.instanceType
    };
    await state.save(LAUNCH_STATE_KEY, value).catch(() => undefined);
  };

  /** The whole launch flow: dialog → save → submit → panel. */
  const launch = async (
    path: string,
    prefill?: ILaunchForm
  ): Promise<IJob | null> => {
    let config: IServerConfig;
    try {
      config = await model.ensureConfig();
    } catch (reason) {
      Notification.error(
        reason instanceof ApiError && reason.status === 404
          ? trans.__('The awsjobs server extension is not running.')
          : trans.__(
              'Cannot reach the jobs server: %1',
              String(reasonMessage(reason))
            )
      );
      return null;
    }
    const backends = offeredBackends(config);
    if (backends.length === 0) {
      Notification.error(
        trans.__('No job backend is configured on the server.')
      );
      return null;
    }
    let form = prefill
      ? { ...prefill }
      : initialForm(model, config, await remembered());
    if (!backends.some(b => b.id === form.backend)) {
      form = { ...form, backend: backends[0].id };
    }
    let serverError: string | null = null;
    for (;;) {
      const result = await showLaunchDialog({
        path,
        isNotebook: isNotebookPath(path),
        form,
        backends,
        maxAllowedLifetimeMinutes:
          config.defaults?.max_allowed_lifetime_minutes ?? 0,
        model,
        trans,
        title: prefill
          ? trans.__('Re-run %1 as Job', basename(path))
          : trans.__('Run %1 as Job', basename(path)),
        serverError
      });
      if (!result) {
        return null;
      }
      form = result.form;
      if (!(await ensureSaved(path))) {
        return null;
      }
      void remember(form);
      // A toast while the server launches, replaced by the outcome.
      const pending = Notification.emit(
        trans.__('Launching %1…', basename(path)),
        'in-progress',
        { autoClose: false }
      );
      try {
        const job = await model.submit(result.request);
        Notification.dismiss(pending);
        Notification.success(
          trans.__('Job for %1 submitted.', basename(path)),
          { autoClose: 4000 }
        );
        openPanel(job.id);
        return job;
      } catch (reason) {
        Notification.dismiss(pending);
        Notification.error(
          trans.__(
            'Could not launch %1: %2',
            basename(path),
            reasonMessage(reason)
          ),
          { autoClose: 8000 }
        );
        if (
          reason instanceof ApiError &&
          reason.status >= 400 &&
          reason.status < 500
        ) {
          // Show the form again with the server's message.
          serverError = reason.message;
          continue;
        }
        return null;
      }
    }
  };

  commands.addCommand(CommandIDs.runFile, {
    describedBy: {
      args: {
        type: 'object',
        properties: {
          path: {
            type: 'string',
            description: trans.__(
              'The file to run (default: the file browser selection)'
            )
          }
        }
      }
    },
    label: args =>
      args.path
        ? trans.__('Run %1 as Job…', basename(String(args.path)))
        : trans.__('Run as Job…'),
    caption: trans.__('Run this notebook or script as a job'),
    icon: args => (args.toolbar ? jobsIcon : undefined),
    isVisible: args => {
      const path = typeof args.path === 'string' ? args.path : selectedFile();
      return !!path && isSupportedPath(path);
    },
    execute: async args => {
      const path =
        typeof args.path === 'string' ? localPath(args.path) : selectedFile();
      if (!path || !isSupportedPath(path)) {
        Notification.warning(
          trans.__('Select a notebook or a .py, .R, .Rmd, .qmd or .sh file.')
        );
        return null;
      }
      return launch(path);
    }
  });

  commands.addCommand(CommandIDs.runCurrent, {
    describedBy: {
      args: {
        type: 'object',
        properties: {
          fromTab: {
            type: 'boolean',
            description: trans.__('Run the document of the right-clicked tab')
          }
        }
      }
    },
    label: args => (args.toolbar ? '' : trans.__('Run Current File as Job…')),
    caption: trans.__('Run the current notebook or script as a job'),
    icon: args => (args.toolbar ? jobsIcon : undefined),
    isEnabled: args => {
      const path = currentPath(args);
      return !!path && isSupportedPath(path);
    },
    isVisible: args => {
      if (!args.fromTab) {
        return true;
      }
      const path = currentPath(args);
      return !!path && isSupportedPath(path);
    },
    execute: async args => {
      const path = currentPath(args);
      if (!path || !isSupportedPath(path)) {
        Notification.warning(
          trans.__('The current tab is not a notebook or a supported script.')
        );
        return null;
      }
      return launch(path);
    }
  });

  commands.addCommand(CommandIDs.openPanel, {
    describedBy: jobArgs(false),
    label: trans.__('Open Jobs Panel'),
    caption: trans.__('Show the Jobs panel'),
    icon: args => (args.isPalette ? undefined : jobsIcon),
    execute: args => {
      openPanel(typeof args.id === 'string' ? args.id : undefined);
    }
  });

  commands.addCommand(CommandIDs.refresh, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Refresh Jobs'),
    execute: () => model.refresh()
  });

  commands.addCommand(CommandIDs.stopJob, {
    describedBy: jobArgs(true),
    label: trans.__('Stop Job…'),
    caption: trans.__('Stop the job and release its machine'),
    isEnabled: args => {
      const job = jobArg(args);
      return !!job && job.state !== 'stopping' && isActive(job);
    },
    execute: async args => {
      const job = jobArg(args);
      if (!job) {
        return;
      }
      if (args.confirm !== false) {
        const answer = await showDialog({
          title: trans.__('Stop job?'),
          body:
            job.backend === 'local'
              ? trans.__(
                  'Stop "%1"? Its process will be terminated.',
                  basename(job.path)
                )
              : trans.__(
                  'Stop "%1"? Its instance %2 will be terminated.',
                  basename(job.path),
                  job.instance_id ?? job.instance_type ?? ''
                ),
          buttons: [
            Dialog.cancelButton({ label: trans.__('Cancel') }),
            Dialog.warnButton({ label: trans.__('Stop job') })
          ]
        });
        if (!answer.button.accept) {
          return;
        }
      }
      try {
        await model.stop(job.id);
      } catch (reason) {
        Notification.error(
          trans.__(
            'Could not stop %1: %2',
            basename(job.path),
            reasonMessage(reason)
          )
        );
      }
    }
  });

  commands.addCommand(CommandIDs.deleteJob, {
    describedBy: jobArgs(true),
    label: trans.__('Remove Job…'),
    caption: trans.__('Remove a finished job from the list'),
    isEnabled: args => {
      const job = jobArg(args);
      return !!job && !isActive(job);
    },
    execute: async args => {
      const job = jobArg(args);
      if (!job) {
        return;
      }
      if (args.confirm !== false) {
        const answer = await showDialog({
          title: trans.__('Remove job?'),
          body: trans.__(
            'Remove "%1" from the job list? Its log file and output stay on disk.',
            basename(job.path)
          ),
          buttons: [
            Dialog.cancelButton({ label: trans.__('Cancel') }),
            Dialog.warnButton({ label: trans.__('Remove') })
          ]
        });
        if (!answer.button.accept) {
          return;
        }
      }
      try {
        await model.remove(job.id);
      } catch (reason) {
        Notification.error(
          trans.__(
            'Could not remove %1: %2',
            basename(job.path),
            reasonMessage(reason)
          )
        );
      }
    }
  });

  commands.addCommand(CommandIDs.openOutput, {
    describedBy: jobArgs(false),
    label: trans.__('Open Job Output'),
    isEnabled: args => !!jobArg(args)?.output_path,
    execute: async args => {
      const job = jobArg(args);
      if (!job?.output_path) {
        return;
      }
      try {
        await commands.execute('docmanager:open', { path: job.output_path });
      } catch (reason) {
        Notification.error(reasonMessage(reason));
      }
    }
  });

  commands.addCommand(CommandIDs.openLog, {
    describedBy: jobArgs(false),
    label: trans.__('Open Job Log File'),
    isEnabled: args => !!jobArg(args),
    execute: async args => {
      const job = jobArg(args);
      if (!job) {
        return;
      }
      try {
        const head = await model.readLog(job.id, 0, 1);
        if (head.size > LARGE_LOG_BYTES) {
          const answer = await showDialog({
            title: trans.__('Large log file'),
            body: trans.__(
              'The log is %1 MiB. Opening it in the editor loads all of it into the browser.',
              Math.round(head.size / 1024 / 1024)
            ),
            buttons: [
              Dialog.cancelButton({ label: trans.__('Cancel') }),
              Dialog.okButton({ label: trans.__('Open anyway') })
            ]
          });
          if (!answer.button.accept) {
            return;
          }
        }
      } catch {
        // The size is only a courtesy; open the file all the same.
      }
      try {
        await commands.execute('docmanager:open', {
          path: job.log_path,
          factory: 'Editor'
        });
      } catch (reason) {
        Notification.error(reasonMessage(reason));
      }
    }
  });

  commands.addCommand(CommandIDs.rerunJob, {
    describedBy: jobArgs(false),
    label: trans.__('Re-run Job…'),
    caption: trans.__('Launch the same file again with the same settings'),
    isEnabled: args => !!jobArg(args),
    execute: async args => {
      const job = jobArg(args);
      if (!job) {
        return null;
      }
      return launch(job.path, formFromJob(job));
    }
  });
}

function isActive(job: IJob): boolean {
  return isActiveState(job.state);
}

/** The user-facing message of an error. */
export function reasonMessage(reason: unknown): string {
  if (reason instanceof Error) {
    return reason.message;
  }
  return String(reason);
}
