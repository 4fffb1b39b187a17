/**
 * The Instances view's model: this tool's EC2 instances (`GET instances`),
 * orphans first, refreshed on the Jobs panel's poll while the view is shown,
 * and terminated on request (`POST instances/stop`).
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import { formatCost } from './format';
import { PanelListModel } from './panellist';
import type { JobsService } from './service';
import { IJobsModel, IServerConfig, isActiveState } from './tokens';

/** One row of `GET instances` (`backends/ec2/inventory.py` `instance_row`). */
export interface IInstance {
  instance_id: string;
  instance_type: string | null;
  spot: boolean;
  state: string;
  launch_time: number | null;
  job_id: string | null;
  /** `job` for a job's worker, `image-builder` for `awsjobs build-image`. */
  role: string;
  expires_at: number | null;
  owner: string | null;
  name: string | null;
  hourly_price: number | null;
  cost_so_far: number | null;
  availability_zone: string | null;
  /** Ours, but no active job of this server owns it. */
  orphan: boolean;
}

/** `GET instances` answer. */
export interface IInstanceList {
  instances: IInstance[];
}

/** `POST instances/stop` answer. */
export interface ITerminated {
  terminated: string[];
}

/** The role tag of a job's worker (any other role is shown by name). */
export const JOB_ROLE = 'job';

/** The EC2 states in which an instance is billed and counted as running. */
const RUNNING_STATES: ReadonlySet<string> = new Set(['pending', 'running']);

/** Shown for an instance between a terminate request and its end. */
const SHUTTING_DOWN = 'shutting-down';

/**
 * Whether the server has a backend with an instance inventory (configured or
 * not: the view then shows the server's reason).
 */
export function instancesOffered(config: IServerConfig | null): boolean {
  return !!config?.backends.some(b => b.capabilities?.instances);
}

/** Whether such a backend is also configured (its instances can be listed). */
export function instancesConfigured(config: IServerConfig | null): boolean {
  return !!config?.backends.some(
    b => b.configured && b.capabilities?.instances
  );
}

/** Orphans first, then oldest first (then by id, for a stable order). */
export function sortInstances(rows: ReadonlyArray<IInstance>): IInstance[] {
  return [...rows].sort(
    (a, b) =>
      Number(b.orphan) - Number(a.orphan) ||
      (a.launch_time ?? 0) - (b.launch_time ?? 0) ||
      a.instance_id.localeCompare(b.instance_id)
  );
}

/** Whether the Terminate button applies (not already on its way out). */
export function canTerminate(row: IInstance): boolean {
  return row.state !== SHUTTING_DOWN && row.state !== 'terminated';
}

/** Seconds since launch at `nowSeconds` (null when unknown). */
export function uptimeSeconds(
  row: IInstance,
  nowSeconds: number
): number | null {
  return row.launch_time === null
    ? null
    : Math.max(0, nowSeconds - row.launch_time);
}

/** Cost so far at `nowSeconds`: hourly price × uptime, else the server's. */
export function instanceCost(
  row: IInstance,
  nowSeconds: number
): number | null {
  const uptime = uptimeSeconds(row, nowSeconds);
  if (row.hourly_price === null || uptime === null) {
    return row.cost_so_far;
  }
  return (row.hourly_price * uptime) / 3600;
}

/** Running instances and their spend per hour (the status bar's figures). */
export function runningFigures(rows: ReadonlyArray<IInstance>): {
  count: number;
  hourly: number;
} {
  const running = rows.filter(r => RUNNING_STATES.has(r.state));
  const hourly = running.reduce((sum, r) => sum + (r.hourly_price ?? 0), 0);
  return { count: running.length, hourly };
}

/**
 * The confirmation of a Terminate: every instance named with its cost so far,
 * and what happens to a job running on one.
 */
export function terminateQuestion(
  rows: ReadonlyArray<IInstance>,
  nowSeconds: number,
  trans: TranslationBundle
): string {
  const named = rows.map(row => {
    const cost = formatCost(instanceCost(row, nowSeconds));
    return cost
      ? trans.__('%1 (%2 so far)', row.instance_id, cost)
      : trans.__('%1 (cost unknown)', row.instance_id);
  });
  const withJobs = rows.filter(r => r.job_id && !r.orphan).length;
  const question = trans._n(
    'Terminate this instance: %2?',
    'Terminate these %1 instances: %2?',
    rows.length,
    named.join(', ')
  );
  return withJobs
    ? `${question} ${trans.__('A job running on one is stopped.')}`
    : question;
}

export namespace InstancesModel {
  export interface IOptions {
    service: JobsService;
    jobs: IJobsModel;
  }
}

/** The instance list, its last error and whether the view is shown. */
export class InstancesModel extends PanelListModel<IInstance> {
  constructor(options: InstancesModel.IOptions) {
    super();
    this._service = options.service;
    this._jobs = options.jobs;
    this._jobs.changed.connect(this._onJobsChanged, this);
  }

  get jobs(): IJobsModel {
    return this._jobs;
  }

  /**
   * Terminate instances (rejects with the server's message, nothing touched,
   * when any is not ours); they show `shutting-down` until AWS confirms.
   */
  async terminate(ids: ReadonlyArray<string>): Promise<string[]> {
    const { terminated } = await this._service.terminateInstances(ids);
    const ending = new Set(terminated);
    this.setRows(
      this.rows.map(r =>
        ending.has(r.instance_id) ? { ...r, state: SHUTTING_DOWN } : r
      )
    );
    // Jobs on these instances are stopping now: show it without waiting.
    void this._jobs.refresh().catch(() => undefined);
    return terminated;
  }

  /** Orphans first. */
  protected async readRows(): Promise<IInstance[]> {
    const { instances } = await this._service.listInstances();
    return sortInstances(instances);
  }

  /** None: a list that cannot be read shows only the server's message. */
  protected rowsOnError(): IInstance[] {
    return [];
  }

  /**
   * On each change of the jobs (each poll among them): read again while the
   * view is seen and a poll interval has passed; otherwise only when the
   * server has an inventory and the active jobs changed (and once at start),
   * so the status bar follows what is billing without polling AWS.
   */
  private _onJobsChanged(): void {
    const active = this._jobs.jobs
      .filter(j => isActiveState(j.state))
      .map(j => `${j.id}:${j.state}`)
      .join(',');
    const jobsMoved = active !== this._activeKey;
    this._activeKey = active;
    const interval = this._jobs.settings.pollIntervalSeconds * 1000;
    const due =
      this.shown &&
      this._jobs.visible &&
      Date.now() - this.lastRead >= interval * 0.9;
    const stale =
      (jobsMoved || !this.loaded) && instancesConfigured(this._jobs.config);
    if (due || stale) {
      void this.refresh();
    }
  }

  private _service: JobsService;
  private _jobs: IJobsModel;
  /** The active jobs and their states at the last change (`id:state,…`). */
  private _activeKey: string | null = null;
}
