/**
 * The commands on one job (the panel's buttons run these): stop, remove,
 * open its output or log; and the panel's own: open it, refresh.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';

import { configBackendCan } from '../backends';
import { basename } from '../format';
import { errorText } from '../handler';
import { jobsIcon } from '../icons';
import {
  CommandIDs,
  IJob,
  IJobsModel,
  isActiveState,
  PANEL_ID
} from '../tokens';
import { confirmThenAct } from './confirm';
import { ICommandsOptions, jobArg, jobArgs } from './context';

/** A log larger than this asks before opening in the editor. */
const LARGE_LOG_BYTES = 50 * 1024 * 1024;

export function registerJobCommands(options: ICommandsOptions): void {
  const { app, model, trans } = options;
  const { commands, shell } = app;

  commands.addCommand(CommandIDs.openPanel, {
    describedBy: jobArgs(trans, false),
    label: trans.__('Open Jobs Panel'),
    caption: trans.__('Show the Jobs panel'),
    icon: args => (args.isPalette ? undefined : jobsIcon),
    execute: args => {
      if (typeof args.id === 'string') {
        model.select(args.id);
      }
      shell.activateById(PANEL_ID);
    }
  });

  commands.addCommand(CommandIDs.refresh, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Refresh Jobs'),
    execute: () => model.refresh()
  });

  commands.addCommand(CommandIDs.stopJob, {
    describedBy: jobArgs(trans, true),
    label: trans.__('Stop Job…'),
    caption: trans.__('Stop the job and release its machine'),
    isEnabled: args => {
      const job = jobArg(model, args);
      return !!job && job.state !== 'stopping' && isActiveState(job.state);
    },
    execute: async args => {
      const job = jobArg(model, args);
      if (!job) {
        return;
      }
      await confirmThenAct({
        ask: args.confirm !== false,
        title: trans.__('Stop job?'),
        body: stopQuestion(model, job, trans),
        acceptLabel: trans.__('Stop job'),
        act: () => model.stop(job.id),
        failure: error =>
          trans.__('Could not stop %1: %2', basename(job.path), error),
        trans
      });
    }
  });

  commands.addCommand(CommandIDs.deleteJob, {
    describedBy: jobArgs(trans, true),
    label: trans.__('Remove Job…'),
    caption: trans.__('Remove a finished job from the list'),
    isEnabled: args => {
      const job = jobArg(model, args);
      return !!job && !isActiveState(job.state);
    },
    execute: async args => {
      const job = jobArg(model, args);
      if (!job) {
        return;
      }
      await confirmThenAct({
        ask: args.confirm !== false,
        title: trans.__('Remove job?'),
        body: trans.__(
          'Remove "%1" from the job list? Its log file and output stay on disk.',
          basename(job.path)
        ),
        acceptLabel: trans.__('Remove'),
        act: () => model.remove(job.id),
        failure: error =>
          trans.__('Could not remove %1: %2', basename(job.path), error),
        trans
      });
    }
  });

  commands.addCommand(CommandIDs.openOutput, {
    describedBy: jobArgs(trans, false),
    label: trans.__('Open Job Output'),
    isEnabled: args => !!jobArg(model, args)?.output_path,
    execute: async args => {
      const job = jobArg(model, args);
      if (job?.output_path) {
        await openFile(options, job.output_path);
      }
    }
  });

  commands.addCommand(CommandIDs.openLog, {
    describedBy: jobArgs(trans, false),
    label: trans.__('Open Job Log File'),
    isEnabled: args => !!jobArg(model, args),
    execute: async args => {
      const job = jobArg(model, args);
      if (job && (await largeLogAccepted(model, job, trans))) {
        await openFile(options, job.log_path, 'Editor');
      }
    }
  });
}

/** What Stop ends: a machine of an instance backend, else a process. */
function stopQuestion(
  model: IJobsModel,
  job: IJob,
  trans: TranslationBundle
): string {
  return configBackendCan(model.config, job.backend, 'instances')
    ? trans.__(
        'Stop "%1"? Its instance %2 will be terminated.',
        basename(job.path),
        job.instance_id ?? job.instance_type ?? ''
      )
    : trans.__(
        'Stop "%1"? Its process will be terminated.',
        basename(job.path)
      );
}

/** Open a file in JupyterLab; a failure is a notification. */
async function openFile(
  options: ICommandsOptions,
  path: string,
  factory?: string
): Promise<void> {
  try {
    await options.app.commands.execute(
      'docmanager:open',
      factory ? { path, factory } : { path }
    );
  } catch (reason) {
    Notification.error(errorText(reason));
  }
}

/** False when the log is large and the user would rather not load it all. */
async function largeLogAccepted(
  model: IJobsModel,
  job: IJob,
  trans: TranslationBundle
): Promise<boolean> {
  let size: number;
  try {
    size = (await model.readLog(job.id, 0, 1)).size;
  } catch {
    // The size is only a courtesy; open the file all the same.
    return true;
  }
  if (size <= LARGE_LOG_BYTES) {
    return true;
  }
  const answer = await showDialog({
    title: trans.__('Large log file'),
    body: trans.__(
      'The log is %1 MiB. Opening it in the editor loads all of it into the browser.',
      Math.round(size / 1024 / 1024)
    ),
    buttons: [
      Dialog.cancelButton({ label: trans.__('Cancel') }),
      Dialog.okButton({ label: trans.__('Open anyway') })
    ]
  });
  return answer.button.accept;
}
