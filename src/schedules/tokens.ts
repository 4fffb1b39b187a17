/**
 * Typed mirror of the schedule part of the REST API (`/awsjobs/api/schedules`,
 * `schedule-preview`; `awsjobs_lab/schedules/model.py` `Schedule.to_dict()`),
 * and the token of the schedules model shared by the panel and the commands.
 */
import { Token } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';

import type { IJob, ILaunchRequest, JobState } from '../tokens';

/** One upcoming firing: ISO 8601 in UTC and in the schedule's own zone. */
export interface INextRun {
  utc: string;
  local: string;
}

/**
 * One past run: a job (`job_id`, its state), or a firing missed while the
 * server was down (`state: 'missed'`, no job, `scheduled_for`).
 */
export interface IScheduleRun {
  job_id: string | null;
  state: JobState | 'missed' | string;
  /** Epoch seconds. */
  created_at?: number | null;
  scheduled_for?: number | null;
  finished_at?: number | null;
  error?: string | null;
}

/** A schedule, as served by the REST API. */
export interface ISchedule {
  name: string;
  owner: string;
  cron: string;
  timezone: string;
  /** ISO 8601, or null. */
  start_at: string | null;
  end_at: string | null;
  enabled: boolean;
  /** The `POST jobs` body each run is launched with. */
  job: ILaunchRequest;
  /** The cron expression in words ("at 06:00, Monday to Friday, Europe/Paris"). */
  description: string;
  next_runs: INextRun[];
  /** The last runs, newest first (`GET schedules/{name}` only). */
  runs?: IScheduleRun[];
  /** The last run (`GET schedules` only). */
  last_run?: IScheduleRun | null;
  backend: string;
  /** It lives outside this server (EC2: EventBridge Scheduler). */
  remote?: boolean;
  /** Why this server cannot read a schedule found remotely. */
  error?: string | null;
  created_at?: number;
  updated_at?: number;
}

/** `GET schedules` answer. */
export interface IScheduleList {
  schedules: ISchedule[];
}

/** `POST schedules` body. */
export interface IScheduleCreate {
  name: string;
  cron: string;
  timezone: string;
  start_at?: string;
  end_at?: string;
  enabled: boolean;
  job: ILaunchRequest;
}

/** `PATCH schedules/{name}` body: only the fields that change. */
export type ISchedulePatch = Partial<Omit<IScheduleCreate, 'name'>>;

/** `GET schedule-preview` answer. */
export interface ISchedulePreview {
  description: string;
  next_runs: INextRun[];
}

/** The schedules of this owner, their freshness and the REST calls on them. */
export interface ISchedulesModel {
  readonly changed: ISignal<ISchedulesModel, void>;
  /** By name. */
  readonly rows: ReadonlyArray<ISchedule>;
  /** The server's message when the list cannot be read. */
  readonly error: string | null;
  readonly loaded: boolean;
  /** Whether the Jobs panel shows the Schedules view. */
  readonly shown: boolean;
  setShown(shown: boolean): void;
  refresh(): Promise<void>;
  get(name: string): ISchedule | undefined;
  create(request: IScheduleCreate): Promise<ISchedule>;
  setEnabled(name: string, enabled: boolean): Promise<ISchedule>;
  runNow(name: string): Promise<IJob>;
  remove(name: string): Promise<void>;
  preview(cron: string, timezone: string): Promise<ISchedulePreview>;
}

export const ISchedulesModel = new Token<ISchedulesModel>(
  'awsjobs-lab:ISchedulesModel',
  'The schedules of awsjobs-lab: list, create, enable/disable, run now, delete.'
);
