/**
 * The Schedules view's model: this owner's schedules (`GET schedules`), read
 * again on the Jobs panel's poll while the view is seen (so it stands by with
 * the panel), and the calls on one schedule: create, enable/disable, run now,
 * delete, and the dialog's preview of a cron expression.
 */
import { PanelListModel } from '../panellist';
import type { IJob, IJobsModel } from '../tokens';
import type { SchedulesService } from './service';
import type {
  ISchedule,
  IScheduleCreate,
  IScheduleRun,
  ISchedulePreview,
  ISchedulesModel
} from './tokens';

/** By name, so rows keep their place as they change. */
export function sortSchedules(rows: ReadonlyArray<ISchedule>): ISchedule[] {
  return [...rows].sort((a, b) => a.name.localeCompare(b.name));
}

/** Replace (or add) one schedule in a sorted list. */
function putRow(rows: ReadonlyArray<ISchedule>, row: ISchedule): ISchedule[] {
  return sortSchedules([...rows.filter(r => r.name !== row.name), row]);
}

/**
 * What a change of the jobs says about the schedules: the scheduled jobs and
 * their states (a run that starts or ends changes a "last run").
 */
function scheduledJobsKey(jobs: ReadonlyArray<IJob>): string {
  return jobs
    .filter(j => j.schedule)
    .map(j => `${j.id}:${j.state}`)
    .join(',');
}

export namespace SchedulesModel {
  export interface IOptions {
    service: SchedulesService;
    jobs: IJobsModel;
  }
}

export class SchedulesModel
  extends PanelListModel<ISchedule>
  implements ISchedulesModel
{
  constructor(options: SchedulesModel.IOptions) {
    super();
    this._service = options.service;
    this._jobs = options.jobs;
    this._jobs.changed.connect(this._onJobsChanged, this);
  }

  get(name: string): ISchedule | undefined {
    return this.rows.find(r => r.name === name);
  }

  async create(request: IScheduleCreate): Promise<ISchedule> {
    const schedule = await this._service.create(request);
    this.setRows(putRow(this.rows, schedule));
    return schedule;
  }

  async setEnabled(name: string, enabled: boolean): Promise<ISchedule> {
    const schedule = await this._service.patch(name, { enabled });
    this.setRows(putRow(this.rows, schedule));
    return schedule;
  }

  /** One run now; the job list shows it at once. */
  async runNow(name: string): Promise<IJob> {
    const job = await this._service.run(name);
    void this._jobs.refresh();
    void this.refresh();
    return job;
  }

  async remove(name: string): Promise<void> {
    await this._service.remove(name);
    this.setRows(this.rows.filter(r => r.name !== name));
  }

  preview(cron: string, timezone: string): Promise<ISchedulePreview> {
    return this._service.preview(cron, timezone);
  }

  dispose(): void {
    this._jobs.changed.disconnect(this._onJobsChanged, this);
    super.dispose();
  }

  protected async readRows(): Promise<ISchedule[]> {
    const { schedules } = await this._service.list();
    return sortSchedules(schedules);
  }

  /**
   * The Jobs panel's poll (each one changes the jobs): read again while this
   * view is seen, when a poll interval has passed or a scheduled job moved.
   */
  private _onJobsChanged(): void {
    const key = scheduledJobsKey(this._jobs.jobs);
    const moved = key !== this._runsKey;
    this._runsKey = key;
    if (!this.shown || !this._jobs.visible) {
      return;
    }
    const interval = this._jobs.settings.pollIntervalSeconds * 1000;
    if (moved || Date.now() - this.lastRead >= interval * 0.9) {
      void this.refresh();
    }
  }

  private _service: SchedulesService;
  private _jobs: IJobsModel;
  private _runsKey = '';
}

/** A run's time in epoch seconds (0 when unknown). */
export function runTime(run: IScheduleRun): number {
  return run.created_at ?? run.scheduled_for ?? 0;
}

/**
 * A schedule's last run: the newest of its `runs` (one schedule) or its
 * `last_run` (the list), else the newest listed job it started, else null.
 */
export function lastRun(
  schedule: ISchedule,
  jobs: ReadonlyArray<IJob>
): IScheduleRun | null {
  const runs = schedule.runs ?? [];
  if (runs.length) {
    return runs.reduce((a, b) => (runTime(b) > runTime(a) ? b : a));
  }
  if (schedule.last_run) {
    return schedule.last_run;
  }
  const job = jobs.find(j => j.schedule === schedule.name);
  return job
    ? { job_id: job.id, state: job.state, created_at: job.created_at }
    : null;
}
