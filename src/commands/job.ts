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

  addConfirmedJobCommand(options, CommandIDs.stopJob, {
    label: trans.__('Stop Job…'),
    caption: trans.__('Stop the job and release its machine'),
    applies: job => job.state !== 'stopping' && isActiveState(job.state),
    title: trans.__('Stop job?'),
    question: job => stopQuestion(model, job, trans),
    acceptLabel: trans.__('Stop job'),
    act: job => model.stop(job.id),
    failure: (name, error) => trans.__('Could not stop %1: %2', name, error)
  });

  addConfirmedJobCommand(options, CommandIDs.deleteJob, {
    label: trans.__('Remove Job…'),
    caption: trans.__('Remove a finished job from the list'),
    applies: job => !isActiveState(job.state),
    title: trans.__('Remove job?'),
    question: job =>
      trans.__(
        'Remove "%1" from the job list? Its log file and output stay on disk.',
        basename(job.path)
      ),
    acceptLabel: trans.__('Remove'),
    act: job => model.remove(job.id),
    failure: (name, error) => trans.__('Could not remove %1: %2', name, error)
  });

  commands.addCommand(CommandIDs.openOutput, {
    describedBy: jobArgs(trans, false),
    label: trans.__('Open Job Output'),
    isEnabled: args => !!jobArg(model, args)?.output_path,
    execute: async args => {
      const job = jobArg(model, args);
      if (job?.output_path) {
        await openFile(options, job.output_path, outputViewer(job.output_path));
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

/** A command on one job that asks first (unless `confirm: false`), then acts. */
interface IConfirmedJobCommand {
  label: string;
  caption: string;
  /** Whether the command applies to this job (else it is disabled). */
  applies: (job: IJob) => boolean;
  title: string;
  question: (job: IJob) => string;
  acceptLabel: string;
  act: (job: IJob) => Promise<unknown>;
  /** The failure's text, given the file's name and the error's text. */
  failure: (name: string, error: string) => string;
}

function addConfirmedJobCommand(
  options: ICommandsOptions,
  id: string,
  spec: IConfirmedJobCommand
): void {
  const { model, trans } = options;
  options.app.commands.addCommand(id, {
    describedBy: jobArgs(trans, true),
    label: spec.label,
    caption: spec.caption,
    isEnabled: args => {
      const job = jobArg(model, args);
      return !!job && spec.applies(job);
    },
    execute: async args => {
      const job = jobArg(model, args);
      if (!job) {
        return;
      }
      await confirmThenAct({
        ask: args.confirm !== false,
        title: spec.title,
        body: spec.question(job),
        acceptLabel: spec.acceptLabel,
        act: () => spec.act(job),
        failure: error => spec.failure(basename(job.path), error),
        trans
      });
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

/** The factory name of JupyterLab's HTML viewer (@jupyterlab/htmlviewer). */
const HTML_VIEWER = 'HTML Viewer';

/**
 * The viewer of a job's output: a rendered HTML report opens in JupyterLab's
 * HTML viewer (trusted only as JupyterLab trusts any HTML file), anything
 * else (a notebook, a PDF) with its default viewer.
 */
export function outputViewer(path: string): string | undefined {
  return /\.html?$/i.test(path) ? HTML_VIEWER : undefined;
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
