/**
 * JobsModel: the job list, its freshness (one `Poll` with backoff and
 * standby), the clock that makes elapsed times tick, and the REST calls the
 * panel and the commands share.
 */
import { IPoll, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, errorText } from './handler';
import { compareNewestFirst } from './format';
import type { JobsService } from './service';
import { spendFigures } from './spend';
import {
  DEFAULT_SETTINGS,
  IInstanceQuery,
  IInstanceTypes,
  IJob,
  IJobsModel,
  IJobsSettings,
  ILaunchRequest,
  ILogChunk,
  IServerConfig,
  isActiveState,
  JobState,
  ServerStatus
} from './tokens';

/** At most this many jobs outside the first page are re-fetched per poll. */
const MAX_WATCHED_FETCHES = 20;

/**
 * The polling decision: stand by when nobody looks at the panel and no job
 * can change; otherwise poll, but pause while the browser tab is hidden.
 */
export function pollStandby(
  visible: boolean,
  hasActive: boolean
): boolean | 'when-hidden' {
  return !visible && !hasActive ? true : 'when-hidden';
}

/** Whether the elapsed-time clock should tick. */
export function clockStandby(visible: boolean, hasActive: boolean): boolean {
  return !visible || !hasActive;
}

/**
 * The jobs that ended between two snapshots: active before, terminal now.
 */
export function endedJobs(
  before: ReadonlyMap<string, IJob>,
  after: ReadonlyArray<IJob>
): IJob[] {
  return after.filter(job => {
    const prev = before.get(job.id);
    return !!prev && isActiveState(prev.state) && !isActiveState(job.state);
  });
}

/**
 * Merge the first page with the jobs already listed from later pages: the
 * page wins for the jobs it holds; older jobs (from "load more") are kept.
 */
export function mergeFirstPage(
  page: ReadonlyArray<IJob>,
  listed: ReadonlyArray<IJob>,
  keepOlder: boolean
): IJob[] {
  const ids = new Set(page.map(j => j.id));
  const merged = [...page];
  if (keepOlder && page.length) {
    const oldest = page[page.length - 1];
    for (const job of listed) {
      if (!ids.has(job.id) && compareNewestFirst(oldest, job) < 0) {
        merged.push(job);
      }
    }
  }
  return merged.sort(compareNewestFirst);
}

export namespace JobsModel {
  export interface IOptions {
    service: JobsService;
    settings?: Partial<IJobsSettings>;
    /** Jobs per page. */
    pageSize?: number;
    /** Start polling at once (tests pass false). */
    autoStart?: boolean;
  }
}

export class JobsModel implements IJobsModel {
  constructor(options: JobsModel.IOptions) {
    this._service = options.service;
    this._settings = { ...DEFAULT_SETTINGS, ...(options.settings ?? {}) };
    this._pageSize = options.pageSize ?? 30;
    this._poll = this._createPoll();
    this._clock = new Poll({
      auto: false,
      factory: async () => {
        this._tick.emit(Date.now() / 1000);
      },
      frequency: { interval: 1000, backoff: false },
      name: 'awsjobs-lab:clock',
      standby: () => clockStandby(this._visible, this.hasActive)
    });
    if (options.autoStart !== false) {
      void this._poll.start();
      void this._clock.start();
    }
  }

  get changed(): ISignal<IJobsModel, void> {
    return this._changed;
  }
  get jobEnded(): ISignal<IJobsModel, IJob> {
    return this._jobEnded;
  }
  get tick(): ISignal<IJobsModel, number> {
    return this._tick;
  }
  get selectionChanged(): ISignal<IJobsModel, string | null> {
    return this._selectionChanged;
  }

  get jobs(): ReadonlyArray<IJob> {
    return this._list;
  }
  get config(): IServerConfig | null {
    return this._config;
  }
  get serverStatus(): ServerStatus {
    return this._serverStatus;
  }
  get error(): string | null {
    return this._error;
  }
  get settings(): IJobsSettings {
    return this._settings;
  }
  get stateFilter(): ReadonlyArray<JobState> {
    return this._filter;
  }
  get scheduleFilter(): string | null {
    return this._scheduleFilter;
  }
  get hasMore(): boolean {
    return !!this._cursor;
  }
  get selectedId(): string | null {
    return this._selectedId;
  }
  get visible(): boolean {
    return this._visible;
  }
  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether any job we know of may still change. */
  get hasActive(): boolean {
    for (const job of this._known.values()) {
      if (isActiveState(job.state)) {
        return true;
      }
    }
    return false;
  }

  /** The last value of a job we know, listed or not. */
  get(id: string): IJob | undefined {
    return this._known.get(id);
  }

  /** Fetch one job (e.g. a selected job not in the current list). */
  async fetchJob(id: string): Promise<IJob> {
    const job = await this._service.getJob(id);
    this._remember([job]);
    this._changed.emit();
    return job;
  }

  updateSettings(settings: Partial<IJobsSettings>): void {
    const before = this._settings;
    this._settings = { ...this._settings, ...settings };
    if (
      before.pollIntervalSeconds !== this._settings.pollIntervalSeconds ||
      before.maxPollIntervalSeconds !== this._settings.maxPollIntervalSeconds
    ) {
      this._poll.frequency = this._frequency();
    }
    this._changed.emit();
  }

  /** The panel tells the model whether it is seen. */
  setVisible(visible: boolean): void {
    if (this._visible === visible) {
      return;
    }
    this._visible = visible;
    if (visible) {
      void this.refresh();
      void this._clock.refresh();
    }
  }

  setStateFilter(states: ReadonlyArray<JobState>): void {
    this._filter = [...states];
    this._cursor = null;
    this._loadedMore = false;
    this._list = this._list.filter(j => this._passes(j));
    this._changed.emit();
    // The server filters (state, schedule): a refresh in flight asked with the
    // old filter, so ask again once it is done.
    const inFlight = this._refreshing;
    void (inFlight
      ? inFlight.catch(() => undefined).then(() => this.refresh())
      : this.refresh());
  }

  /** List only the jobs of one schedule (null: all). */
  setScheduleFilter(name: string | null): void {
    if (this._scheduleFilter === name) {
      return;
    }
    this._scheduleFilter = name;
    this.setStateFilter(this._filter);
  }

  select(id: string | null): void {
    if (this._selectedId === id) {
      return;
    }
    this._selectedId = id;
    this._selectionChanged.emit(id);
    this._changed.emit();
    if (id && !this._known.has(id)) {
      this.fetchJob(id).catch(reason => {
        if (reason instanceof ApiError && reason.status === 404) {
          // A remembered job that was removed meanwhile: forget it quietly.
          if (this._selectedId === id) {
            this.select(null);
          }
          return;
        }
        this._reportError(reason);
      });
    }
  }

  clearError(): void {
    if (this._error) {
      this._error = null;
      this._changed.emit();
    }
  }

  /** Refresh now (shares an in-flight refresh). */
  refresh(): Promise<void> {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing.catch(() => undefined);
  }

  async loadMore(): Promise<void> {
    if (!this._cursor) {
      return;
    }
    try {
      const page = await this._service.listJobs({
        state: this._filter,
        limit: this._pageSize,
        cursor: this._cursor,
        schedule: this._scheduleFilter
      });
      this._remember(page.jobs);
      const ids = new Set(this._list.map(j => j.id));
      this._list = [
        ...this._list,
        ...page.jobs.filter(j => !ids.has(j.id) && this._passes(j))
      ].sort(compareNewestFirst);
      this._cursor = page.next_cursor;
      this._loadedMore = true;
      this._changed.emit();
    } catch (reason) {
      this._reportError(reason);
    }
  }

  /** The server's config, loaded once and cached (one request in flight). */
  async ensureConfig(): Promise<IServerConfig> {
    if (this._config) {
      return this._config;
    }
    try {
      const config = await this._loadConfig();
      this._setStatus('ok');
      this._changed.emit();
      return config;
    } catch (reason) {
      this._reportError(reason);
      throw reason;
    }
  }

  async submit(request: ILaunchRequest): Promise<IJob> {
    const job = await this._service.submit(request);
    this._remember([job]);
    if (this._passes(job) && !this._list.some(j => j.id === job.id)) {
      this._list = [job, ...this._list].sort(compareNewestFirst);
    }
    this._changed.emit();
    void this._poll.refresh();
    void this._clock.refresh();
    return job;
  }

  async stop(id: string): Promise<IJob> {
    const current = this._known.get(id);
    if (current && isActiveState(current.state)) {
      // Show `stopping` at once; the server confirms the final state later.
      this._put({
        ...current,
        state: 'stopping',
        stop_requested: true
      });
    }
    try {
      const job = await this._service.stopJob(id);
      this._put(job);
      return job;
    } catch (reason) {
      if (current) {
        this._put(current);
      }
      throw reason;
    } finally {
      void this._poll.refresh();
    }
  }

  async remove(id: string): Promise<void> {
    await this._service.deleteJob(id);
    this._known.delete(id);
    this._list = this._list.filter(j => j.id !== id);
    if (this._selectedId === id) {
      this.select(null);
    }
    this._changed.emit();
  }

  readLog(id: string, offset: number, limit?: number): Promise<ILogChunk> {
    return this._service.readLog(id, offset, limit);
  }

  instanceTypes(query: IInstanceQuery): Promise<IInstanceTypes> {
    return this._service.instanceTypes(query);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    this._clock.dispose();
    Signal.clearData(this);
  }

  /** The poll's standby decision (exposed for tests). */
  shouldStandby(): boolean | 'when-hidden' {
    return pollStandby(this._visible, this.hasActive);
  }

  private _createPoll(): Poll {
    return new Poll({
      auto: false,
      factory: () => this._refreshForPoll(),
      frequency: this._frequency(),
      name: 'awsjobs-lab:jobs',
      standby: () => (this._primed ? this.shouldStandby() : false)
    });
  }

  private _frequency(): IPoll.Frequency {
    const interval = Math.max(0.5, this._settings.pollIntervalSeconds) * 1000;
    const max = Math.max(
      interval,
      this._settings.maxPollIntervalSeconds * 1000
    );
    return { interval, backoff: true, max };
  }

  private async _refreshForPoll(): Promise<void> {
    // Let the poll see rejections so it backs off.
    if (this._refreshing) {
      await this._refreshing;
      return;
    }
    this._refreshing = this._refresh().finally(() => {
      this._refreshing = null;
    });
    await this._refreshing;
  }

  private async _refresh(): Promise<void> {
    try {
      // Re-read while the panel shows spend figures, which change with the jobs.
      if (!this._config || spendFigures(this._config)) {
        try {
          await this._loadConfig();
        } catch (reason) {
          if (reason instanceof ApiError && reason.status === 404) {
            throw reason;
          }
          // The job list may still work; report the config error below.
          this._reportError(reason);
        }
      }
      const page = await this._service.listJobs({
        state: this._filter,
        limit: this._pageSize,
        schedule: this._scheduleFilter
      });
      const before = new Map(this._known);
      this._remember(page.jobs);
      this._list = mergeFirstPage(
        page.jobs.filter(j => this._passes(j)),
        this._list,
        this._loadedMore
      );
      if (!this._loadedMore) {
        this._cursor = page.next_cursor;
      }
      // Jobs we watch that the page does not hold (filtered out, older):
      // fetch them so their end is noticed.
      const inPage = new Set(page.jobs.map(j => j.id));
      const watched = [...before.values()]
        .filter(j => isActiveState(j.state) && !inPage.has(j.id))
        .slice(0, MAX_WATCHED_FETCHES);
      for (const job of watched) {
        try {
          const fresh = await this._service.getJob(job.id);
          this._remember([fresh]);
        } catch (reason) {
          if (reason instanceof ApiError && reason.status === 404) {
            this._known.delete(job.id);
          } else {
            throw reason;
          }
        }
      }
      this._list = this._list.map(j => this._known.get(j.id) ?? j);
      this._setStatus('ok');
      this._error = null;
      this._primed = true;
      const ended = endedJobs(before, [...this._known.values()]);
      this._changed.emit();
      for (const job of ended) {
        this._jobEnded.emit(job);
      }
    } catch (reason) {
      this._primed = true;
      this._reportError(reason);
      throw reason;
    }
  }

  /** Fetch the config, sharing a request already in flight. */
  private _loadConfig(): Promise<IServerConfig> {
    if (!this._configRequest) {
      this._configRequest = this._service
        .getConfig()
        .then(config => {
          this._config = config;
          return config;
        })
        .finally(() => {
          this._configRequest = null;
        });
    }
    return this._configRequest;
  }

  private _remember(jobs: ReadonlyArray<IJob>): void {
    for (const job of jobs) {
      this._known.set(job.id, job);
    }
  }

  /** Store a job and update it in the list. */
  private _put(job: IJob): void {
    this._known.set(job.id, job);
    this._list = this._list.map(j => (j.id === job.id ? job : j));
    this._changed.emit();
  }

  /**
   * Whether a job belongs in the list under the current filters. The server
   * filters pages already; this keeps a submitted job, the list at a filter
   * change and a page asked with the previous filter right.
   */
  private _passes(job: IJob): boolean {
    return (
      (this._filter.length === 0 || this._filter.includes(job.state)) &&
      (!this._scheduleFilter || job.schedule === this._scheduleFilter)
    );
  }

  private _setStatus(status: ServerStatus): void {
    this._serverStatus = status;
  }

  private _reportError(reason: unknown): void {
    if (reason instanceof ApiError && reason.status === 404 && !this._config) {
      // No config endpoint: the server extension is not installed/enabled.
      this._serverStatus = 'missing';
      this._error = null;
    } else {
      this._serverStatus = 'error';
      this._error = errorText(reason);
    }
    this._changed.emit();
  }

  private _service: JobsService;
  private _settings: IJobsSettings;
  private _pageSize: number;
  private _poll: Poll;
  private _clock: Poll;
  private _known = new Map<string, IJob>();
  private _list: IJob[] = [];
  private _filter: JobState[] = [];
  private _scheduleFilter: string | null = null;
  private _cursor: string | null = null;
  private _loadedMore = false;
  private _config: IServerConfig | null = null;
  private _configRequest: Promise<IServerConfig> | null = null;
  private _serverStatus: ServerStatus = 'unknown';
  private _error: string | null = null;
  private _visible = false;
  private _primed = false;
  private _selectedId: string | null = null;
  private _refreshing: Promise<void> | null = null;
  private _isDisposed = false;
  private _changed = new Signal<IJobsModel, void>(this);
  private _jobEnded = new Signal<IJobsModel, IJob>(this);
  private _tick = new Signal<IJobsModel, number>(this);
  private _selectionChanged = new Signal<IJobsModel, string | null>(this);
}
