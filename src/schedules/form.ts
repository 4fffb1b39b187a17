/**
 * The launch dialog's schedule fields ("On a schedule"): their raw values,
 * their validation into the schedule part of `POST schedules`, and the words
 * the dialog and the view show around them. Pure functions, shared by the
 * dialog, the view and the tests.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import { basename } from '../format';
import type { IBackendInfo, ILaunchRequest } from '../tokens';
import type { INextRun, IScheduleCreate } from './tokens';

/** Run the job once now, or create a schedule that runs it. */
export type LaunchMode = 'now' | 'schedule';

/** The schedule fields as typed (times as `datetime-local` values, local time). */
export interface IScheduleForm {
  mode: LaunchMode;
  name: string;
  cron: string;
  timezone: string;
  startAt: string;
  endAt: string;
  enabled: boolean;
}

export type ScheduleField = Exclude<keyof IScheduleForm, 'mode'>;

export type ScheduleErrors = { [field in ScheduleField]?: string };

/** The schedule part of `POST schedules` (the job is the launch form's request). */
export type ScheduleFields = Omit<IScheduleCreate, 'job'>;

/** Letters, digits, `-` and `_` (`awsjobs_lab/patterns.py`). */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** What may appear in a field of a standard cron expression. */
const CRON_FIELD = /^[A-Za-z0-9*/,?-]+$/;

/** The browser's IANA time zone (the dialog's default). */
export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

/** Whether the browser knows this IANA zone. */
export function knownTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** A schedule name from a file name: `report.ipynb` → `report-daily`. */
export function suggestedName(path: string): string {
  const stem = basename(path).replace(/\.[^.]*$/, '');
  const clean = stem.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '');
  return `${clean || 'job'}-daily`.slice(0, 64);
}

/** The fields' first values: every day at 06:00 in the browser's zone. */
export function initialScheduleForm(path: string): IScheduleForm {
  return {
    mode: 'now',
    name: suggestedName(path),
    cron: '0 6 * * *',
    timezone: browserTimeZone(),
    startAt: '',
    endAt: '',
    enabled: true
  };
}

/** Whether a cron expression has five plausible fields (the server decides the rest). */
export function cronLooksValid(cron: string): boolean {
  const fields = cron.trim().split(/\s+/);
  return fields.length === 5 && fields.every(f => CRON_FIELD.test(f));
}

/** A `datetime-local` value as ISO 8601 in UTC, or null when it is not a time. */
export function localInputToIso(value: string): string | null {
  const at = new Date(value);
  return isNaN(at.getTime()) ? null : at.toISOString();
}

/** Check the optional start and end (end after start). */
function validateWindow(
  form: IScheduleForm,
  errors: ScheduleErrors,
  trans: TranslationBundle
): { start: string | null; end: string | null } {
  const start = form.startAt ? localInputToIso(form.startAt) : null;
  const end = form.endAt ? localInputToIso(form.endAt) : null;
  if (form.startAt && !start) {
    errors.startAt = trans.__('Not a date and time');
  }
  if (form.endAt && !end) {
    errors.endAt = trans.__('Not a date and time');
  } else if (start && end && end <= start) {
    errors.endAt = trans.__('The end must come after the start');
  }
  return { start, end };
}

/** Validate the schedule fields; `fields` is null when any is invalid. */
export function validateSchedule(
  form: IScheduleForm,
  trans: TranslationBundle
): { errors: ScheduleErrors; fields: ScheduleFields | null } {
  const errors: ScheduleErrors = {};
  const name = form.name.trim();
  if (!NAME.test(name)) {
    errors.name = trans.__(
      'A name of 1 to 64 letters, digits, "-" or "_", unique among your schedules'
    );
  }
  const cron = form.cron.trim().replace(/\s+/g, ' ');
  if (!cronLooksValid(cron)) {
    errors.cron = trans.__(
      'Five fields: minute hour day-of-month month day-of-week, like "0 6 * * 1-5"'
    );
  }
  const timezone = form.timezone.trim();
  if (!timezone || !knownTimeZone(timezone)) {
    errors.timezone = trans.__(
      'An IANA time zone, like Europe/Paris or America/New_York'
    );
  }
  const { start, end } = validateWindow(form, errors, trans);
  if (Object.keys(errors).length) {
    return { errors, fields: null };
  }
  const fields: ScheduleFields = {
    name,
    cron,
    timezone,
    enabled: form.enabled
  };
  if (start) {
    fields.start_at = start;
  }
  if (end) {
    fields.end_at = end;
  }
  return { errors, fields };
}

/** The `POST schedules` body: the schedule's fields and the job each run launches. */
export function scheduleRequest(
  fields: ScheduleFields,
  job: ILaunchRequest
): IScheduleCreate {
  return { ...fields, job };
}

/**
 * Where a backend's schedules fire, in plain sentences; for a local schedule,
 * what happens to runs missed while the server is down, with the server's
 * grace (`GET config` `schedules`; null: an older server that does not say).
 */
export function whereSchedulesRun(
  backend: IBackendInfo | undefined,
  trans: TranslationBundle,
  graceMinutes: number | null = null
): string {
  if (backend?.capabilities?.schedules) {
    return trans.__(
      'This schedule lives in AWS: its runs start on time even with JupyterLab and this server stopped; the Jobs panel shows them when the server is up again.'
    );
  }
  const local = trans.__(
    'This schedule runs only while this Jupyter server runs. Nothing fires while it is stopped.'
  );
  if (graceMinutes === null) {
    return `${local} ${trans.__(
      "When it starts again, the latest missed run fires once if it is recent enough (the server's grace period, 60 minutes by default), and missed runs are otherwise recorded as missed."
    )}`;
  }
  if (graceMinutes <= 0) {
    return `${local} ${trans.__(
      'When it starts again, runs missed meanwhile are recorded as missed.'
    )}`;
  }
  return `${local} ${trans._n(
    'When it starts again, the latest missed run fires once if it is at most %1 minute old (this server’s setting), and missed runs are otherwise recorded as missed.',
    'When it starts again, the latest missed run fires once if it is at most %1 minutes old (this server’s setting), and missed runs are otherwise recorded as missed.',
    graceMinutes
  )}`;
}

/** One upcoming run, in the schedule's own zone (the server's words if the browser cannot). */
export function formatRun(run: INextRun, timezone: string): string {
  const at = new Date(run.utc);
  if (isNaN(at.getTime())) {
    return run.local;
  }
  try {
    return at.toLocaleString(undefined, {
      timeZone: timezone,
      weekday: 'short',
      year: 'numeric',
      month: 'short',
      day: 'numeric',
      hour: '2-digit',
      minute: '2-digit'
    });
  } catch {
    return run.local;
  }
}
