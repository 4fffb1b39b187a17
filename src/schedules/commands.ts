/**
 * The commands of the Schedules view (its buttons run these, and so can the
 * palette and the tests): show the view, run a schedule now, enable or
 * disable it, delete it behind a confirmation, list the jobs it started.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { confirmThenAct } from '../commands/confirm';
import { errorText } from '../handler';
import { CommandIDs, IJobsModel, PANEL_ID } from '../tokens';
import type { ISchedule, ISchedulesModel } from './tokens';

export interface IScheduleCommandsOptions {
  app: JupyterFrontEnd;
  jobs: IJobsModel;
  schedules: ISchedulesModel;
  trans: TranslationBundle;
}

/** The schedule a command is about: its `name` argument, if listed. */
function scheduleArg(
  schedules: ISchedulesModel,
  args: ReadonlyPartialJSONObject
): ISchedule | null {
  return typeof args.name === 'string'
    ? (schedules.get(args.name) ?? null)
    : null;
}

/** The arguments of a command on one schedule. */
function nameArgs(trans: TranslationBundle) {
  return {
    args: {
      type: 'object',
      properties: {
        name: {
          type: 'string',
          description: trans.__('The schedule name, as listed')
        }
      }
    }
  };
}

export function registerScheduleCommands(
  options: IScheduleCommandsOptions
): void {
  const { app, jobs, schedules, trans } = options;
  const { commands, shell } = app;

  commands.addCommand(CommandIDs.showSchedules, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Show Job Schedules'),
    caption: trans.__(
      'The schedules that run notebooks and scripts as jobs: run now, enable, disable, delete'
    ),
    execute: () => {
      schedules.setShown(true);
      shell.activateById(PANEL_ID);
    }
  });

  commands.addCommand(CommandIDs.runSchedule, {
    describedBy: nameArgs(trans),
    label: trans.__('Run Schedule Now'),
    isEnabled: args => !!scheduleArg(schedules, args),
    execute: async args => {
      const schedule = scheduleArg(schedules, args);
      if (!schedule) {
        return null;
      }
      try {
        const job = await schedules.runNow(schedule.name);
        Notification.success(
          trans.__('Schedule %1: a run started.', schedule.name),
          { autoClose: 4000 }
        );
        return job;
      } catch (reason) {
        Notification.error(
          trans.__('Could not run %1: %2', schedule.name, errorText(reason))
        );
        return null;
      }
    }
  });

  commands.addCommand(CommandIDs.toggleSchedule, {
    describedBy: nameArgs(trans),
    label: args =>
      scheduleArg(schedules, args)?.enabled
        ? trans.__('Disable Schedule')
        : trans.__('Enable Schedule'),
    isEnabled: args => !!scheduleArg(schedules, args),
    isToggled: args => !!scheduleArg(schedules, args)?.enabled,
    execute: async args => {
      const schedule = scheduleArg(schedules, args);
      if (!schedule) {
        return null;
      }
      try {
        return await schedules.setEnabled(schedule.name, !schedule.enabled);
      } catch (reason) {
        Notification.error(
          trans.__('Could not change %1: %2', schedule.name, errorText(reason))
        );
        return null;
      }
    }
  });

  commands.addCommand(CommandIDs.deleteSchedule, {
    describedBy: nameArgs(trans),
    label: trans.__('Delete Schedule…'),
    isEnabled: args => !!scheduleArg(schedules, args),
    execute: args => {
      const schedule = scheduleArg(schedules, args);
      if (!schedule) {
        return false;
      }
      return confirmThenAct({
        ask: args.confirm !== false,
        title: trans.__('Delete schedule?'),
        body: trans.__(
          'Delete the schedule "%1"? It runs no more; jobs it started that are still running go on, and its past jobs stay in the list.',
          schedule.name
        ),
        acceptLabel: trans.__('Delete'),
        act: () => schedules.remove(schedule.name),
        failure: error =>
          trans.__('Could not delete %1: %2', schedule.name, error),
        trans
      });
    }
  });

  commands.addCommand(CommandIDs.showScheduleJobs, {
    describedBy: nameArgs(trans),
    label: trans.__('Show the Jobs of a Schedule'),
    isEnabled: args => typeof args.name === 'string',
    execute: args => {
      if (typeof args.name !== 'string') {
        return;
      }
      jobs.setScheduleFilter(args.name);
      schedules.setShown(false);
      shell.activateById(PANEL_ID);
    }
  });
}
