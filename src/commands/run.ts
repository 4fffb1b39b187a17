/**
 * The commands that launch a job: run the selected file, run the current
 * document (toolbar, tab menu, Run menu), re-run a job with its settings.
 */
import { Notification } from '@jupyterlab/apputils';

import { basename, isSupportedPath } from '../format';
import { jobsIcon } from '../icons';
import { launchJob } from '../launch/flow';
import { CommandIDs } from '../tokens';
import { formFromJob } from '../validation';
import { ICommandsOptions, jobArg, jobArgs } from './context';
import { fileTargets } from './targets';

export function registerRunCommands(options: ICommandsOptions): void {
  const { app, model, trans } = options;
  const { commands } = app;
  const targets = fileTargets(options);
  const deps = { ...options, commands };

  /**
   * Whether a file runs as a job, by the server's file types. Until the
   * config is loaded (once, cached by the model) the entry is offered and
   * the launch decides.
   */
  const runnable = (path: string | null): boolean => {
    if (!path) {
      return false;
    }
    const config = model.config;
    if (!config) {
      void model.ensureConfig().catch(() => undefined);
      return true;
    }
    return isSupportedPath(path, config.extensions);
  };
  // Once the file types are known, the toolbar button's state follows them.
  const onConfig = (): void => {
    if (model.config) {
      model.changed.disconnect(onConfig);
      commands.notifyCommandChanged(CommandIDs.runCurrent);
    }
  };
  model.changed.connect(onConfig);

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
    isVisible: args =>
      runnable(
        typeof args.path === 'string' ? args.path : targets.selectedFile()
      ),
    execute: async args => {
      const path =
        typeof args.path === 'string'
          ? targets.localPath(args.path)
          : targets.selectedFile();
      if (!path) {
        Notification.warning(
          trans.__('Select one notebook or script in the file browser.')
        );
        return null;
      }
      return launchJob(deps, path);
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
    isEnabled: args => runnable(targets.currentPath(args)),
    isVisible: args => !args.fromTab || runnable(targets.currentPath(args)),
    execute: async args => {
      const path = targets.currentPath(args);
      if (!path) {
        Notification.warning(
          trans.__('The current tab is not a notebook or a supported script.')
        );
        return null;
      }
      return launchJob(deps, path);
    }
  });

  commands.addCommand(CommandIDs.rerunJob, {
    describedBy: jobArgs(trans, false),
    label: trans.__('Re-run Job…'),
    caption: trans.__('Launch the same file again with the same settings'),
    isEnabled: args => !!jobArg(model, args),
    execute: async args => {
      const job = jobArg(model, args);
      if (!job) {
        return null;
      }
      return launchJob(deps, job.path, formFromJob(job));
    }
  });
}
