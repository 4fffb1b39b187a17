/**
 * Creating a schedule from the launch dialog: the request, a notification
 * with the schedule's reading and next run, then the Schedules view.
 */
import { Notification } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import type { CommandRegistry } from '@lumino/commands';

import { ApiError, errorText } from '../handler';
import { CommandIDs } from '../tokens';
import { formatRun } from './form';
import type { ISchedule, IScheduleCreate, ISchedulesModel } from './tokens';

/** The schedule, or the server's message to show in the form (null: give up). */
export type ScheduleSubmitted =
  { schedule: ISchedule } | { retryWith: string | null };

/** What creating a schedule needs from the application. */
export interface IScheduleSubmitDeps {
  schedules: ISchedulesModel;
  trans: TranslationBundle;
  commands: CommandRegistry;
}

/** The notification's words: the name, the reading and the next run. */
export function createdMessage(
  schedule: ISchedule,
  trans: TranslationBundle
): string {
  const next = schedule.next_runs[0];
  const reading = schedule.description || schedule.cron;
  return next
    ? trans.__(
        'Schedule %1 created (%2). Next run: %3.',
        schedule.name,
        reading,
        formatRun(next, schedule.timezone)
      )
    : trans.__('Schedule %1 created (%2).', schedule.name, reading);
}

/** `POST schedules`; a refused request (4xx) goes back to the form with its message. */
export async function submitSchedule(
  deps: IScheduleSubmitDeps,
  request: IScheduleCreate
): Promise<ScheduleSubmitted> {
  const { trans } = deps;
  try {
    const schedule = await deps.schedules.create(request);
    Notification.success(createdMessage(schedule, trans), { autoClose: 6000 });
    void deps.commands.execute(CommandIDs.showSchedules);
    return { schedule };
  } catch (reason) {
    Notification.error(
      trans.__(
        'Could not create schedule %1: %2',
        request.name,
        errorText(reason)
      ),
      { autoClose: 8000 }
    );
    const refused =
      reason instanceof ApiError && reason.status >= 400 && reason.status < 500;
    return { retryWith: refused ? reason.message : null };
  }
}
