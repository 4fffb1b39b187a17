/**
 * Typed mirror of the awsjobs REST API (see CONTRIBUTING.md and `awsjobs_lab/models.py`),
 * the front end's settings, and every id it registers (plugins, commands, the panel).
 *
 * `IJob` follows `Job.to_dict()` field for field; times are epoch seconds.
 */
import { Token } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';

/** Plugin ids; the model plugin's id also names its settings (`schema/plugin.json`). */
export namespace PluginIDs {
  export const model = 'awsjobs-lab:plugin';
  export const panel = 'awsjobs-lab:panel';
  export const commands = 'awsjobs-lab:commands';
  export const schedules = 'awsjobs-lab:schedules';
}

/** Command ids: buttons, menus (`schema/commands.json`), the palette and tests run these. */
export namespace CommandIDs {
  export const runFile = 'awsjobs:run-file';
  export const runCurrent = 'awsjobs:run-current';
  export const stopJob = 'awsjobs:stop-job';
  export const openPanel = 'awsjobs:open-panel';
  export const openOutput = 'awsjobs:open-output';
  export const openLog = 'awsjobs:open-log';
  export const deleteJob = 'awsjobs:delete-job';
  export const rerunJob = 'awsjobs:rerun-job';
  export const refresh = 'awsjobs:refresh';
  export const showInstances = 'awsjobs:show-instances';
  export const terminateInstances = 'awsjobs:terminate-instances';
  export const showSchedules = 'awsjobs:show-schedules';
  export const runSchedule = 'awsjobs:run-schedule';
  export const toggleSchedule = 'awsjobs:toggle-schedule';
  export const deleteSchedule = 'awsjobs:delete-schedule';
  export const showScheduleJobs = 'awsjobs:show-schedule-jobs';
}

/** Id of the Jobs panel in the shell (and in the layout restorer). */
export const PANEL_ID = 'awsjobs-panel';

/** IStateDB keys. */
export namespace StateKeys {
  /** The last launch values (not the per-file ones). */
  export const launchForm = 'awsjobs-lab:launch-form';
  /** The selected job. */
  export const selectedJob = 'awsjobs-lab:selected-job';
}

/** Every job state of the server's state machine. */
export type JobState =
  | 'pending'
  | 'launching'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'stopping'
  | 'stopped'
  | 'timed_out'
  | 'interrupted';

export const JOB_STATES: ReadonlyArray<JobState> = [
  'pending',
  'launching',
  'running',
  'stopping',
  'succeeded',
  'failed',
  'stopped',
  'timed_out',
  'interrupted'
];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set<JobState>([
  'succeeded',
  'failed',
  'stopped',
  'timed_out',
  'interrupted'
]);

export const ACTIVE_STATES: ReadonlyArray<JobState> = JOB_STATES.filter(
  s => !TERMINAL_STATES.has(s)
);

/** Whether a job in this state may still change (the server is driving it). */
export function isActiveState(state: JobState): boolean {
  return !TERMINAL_STATES.has(state);
}

/** One persisted state transition. */
export interface ITransition {
  state: JobState;
  at: number;
  reason: string | null;
  /** Set on a phase entry (not a move): the phase entered at `at`. */
  phase?: JobPhase;
}

/** What an active job waits for now (`phases.py`), within launching/running. */
export type JobPhase =
  'requesting' | 'booting' | 'preparing' | 'running' | 'finishing';

/**
 * What a spot job does when AWS reclaims its instance: `fail` reads
 * `interrupted` at once; `retry` starts the next attempt on spot, the last
 * allowed one on on-demand; `on_demand` starts every later one on on-demand.
 */
export type OnInterruption = 'fail' | 'retry' | 'on_demand';

export const ON_INTERRUPTION: ReadonlyArray<OnInterruption> = [
  'retry',
  'on_demand',
  'fail'
];

/** The most attempts a job may ask for (`max_attempts`, from 1). */
export const MAX_ATTEMPTS_LIMIT = 10;

/** The most GPUs a job may ask for (`gpus`, from 0; `awsjobs_lab/gpus.py`). */
export const MAX_GPUS = 16;

/** One instance a job ran on (`Attempt` in `awsjobs_lab/models.py`). */
export interface IAttempt {
  number: number;
  spot: boolean;
  instance_id: string | null;
  instance_type: string | null;
  availability_zone: string | null;
  hourly_price: number | null;
  started_at: number | null;
  ended_at: number | null;
  /** A terminal state once the attempt has ended. */
  outcome: JobState | null;
  cost: number | null;
}

/** A job, as served by the REST API (`Job.to_dict()`). */
export interface IJob {
  id: string;
  path: string;
  backend: string;
  state: JobState;
  created_at: number;
  updated_at: number;
  memory_gib: number;
  cpus: number;
  spot: boolean;
  max_lifetime_minutes: number;
  log_path: string;
  env: { [name: string]: string };
  parameters: { [name: string]: unknown };
  /** A script's command-line arguments (.py, .R, .sh). */
  args?: string[];
  instance_type: string | null;
  requested_instance_type: string | null;
  hourly_price: number | null;
  output_path: string | null;
  /** A report's format (.Rmd, .qmd), e.g. "html_document". */
  output_format?: string | null;
  command: string[];
  exit_code: number | null;
  error: string | null;
  started_at: number | null;
  finished_at: number | null;
  stop_requested: boolean;
  handle: { [key: string]: unknown };
  history: ITransition[];
  on_interruption: OnInterruption;
  max_attempts: number;
  /** One per instance the job ran on; the last is the current one. */
  attempts: IAttempt[];
  /** At least this many GPUs, each with at least `gpu_memory_gib`, of `gpu_model`. */
  gpus: number;
  gpu_memory_gib: number;
  gpu_model: string | null;
  instance_id: string | null;
  elapsed_seconds: number | null;
  cost_so_far: number | null;
  /** The schedule that started it (absent from an older server). */
  schedule?: string | null;
  /** How its files reach its worker: EFS, S3, or null (this machine). */
  storage?: 'efs' | 's3' | null;
  /** A transfer of its files under way (S3 storage), else null. */
  progress?: ITransferProgress | null;
  /** For the user, e.g. an output kept beside a file they changed. */
  notes?: string[];
  /** Its phase while active, and since when (absent from an older server). */
  phase?: JobPhase | null;
  phase_since?: number | null;
}

/** How far a transfer of a job's files got (`staging/progress.py`). */
export interface ITransferProgress {
  phase: 'uploading_inputs' | 'downloading_outputs';
  bytes_done: number;
  bytes_total: number;
  files_done: number;
  files_total: number;
}

/** `GET jobs` answer. */
export interface IJobPage {
  jobs: IJob[];
  next_cursor: string | null;
}

/** `GET jobs` query. */
export interface IListQuery {
  state?: ReadonlyArray<JobState>;
  limit?: number;
  cursor?: string | null;
  /** Only the jobs this schedule started. */
  schedule?: string | null;
}

/** `POST jobs` body. */
export interface ILaunchRequest {
  path: string;
  backend?: string;
  memory_gib?: number;
  cpus?: number;
  spot?: boolean;
  max_lifetime_minutes?: number;
  log_path?: string;
  env?: { [name: string]: string };
  parameters?: { [name: string]: unknown };
  args?: string[];
  instance_type?: string;
  on_interruption?: OnInterruption;
  max_attempts?: number;
  gpus?: number;
  gpu_memory_gib?: number;
  gpu_model?: string;
}

/** `GET jobs/{id}/log` answer. */
export interface ILogChunk {
  content: string;
  offset: number;
  next_offset: number;
  size: number;
  eof: boolean;
  complete: boolean;
}

/**
 * What a backend offers beyond launch/stop (`Capabilities` in
 * `awsjobs_lab/backends/base.py`): the dialog and the panel show a field or a
 * view only when the job's backend declares it, so a new backend on the
 * server needs no front-end change.
 */
export interface IBackendCapabilities {
  /** The `spot` request field applies (cheaper, may be reclaimed). */
  spot: boolean;
  /** `instance_type` is honoured and `GET instance-types` previews the price. */
  instance_types: boolean;
  /** It has an instance inventory (`GET instances`, `POST instances/stop`). */
  instances: boolean;
  /** Its jobs have an hourly price and a cost so far. */
  hourly_price: boolean;
  /** `gpus`, `gpu_memory_gib`, `gpu_model` are honoured (absent: an older server). */
  gpus?: boolean;
  /** Its schedules live outside this server and fire with it stopped (EC2). */
  schedules?: boolean;
}

export type BackendCapability = keyof IBackendCapabilities;

/** One backend the server offers. */
export interface IBackendInfo {
  id: string;
  label: string;
  configured: boolean;
  capabilities: IBackendCapabilities;
  /**
   * The longest lifetime this backend allows, when it is shorter than the
   * server's limit (EC2: SSM ends a command after 48 hours).
   */
  max_lifetime_minutes?: number;
  [extra: string]: unknown;
}

/** Server-side launch defaults. */
export interface IServerDefaults {
  memory_gib: number;
  cpus: number;
  spot: boolean;
  max_lifetime_minutes: number;
  max_allowed_lifetime_minutes: number;
}

/** The largest values a job may ask for (0: no limit). */
export interface IServerLimits {
  memory_gib: number;
  cpus: number;
  max_lifetime_minutes: number;
}

/** `GET config` answer. */
export interface IServerConfig {
  backends: IBackendInfo[];
  default_backend: string;
  defaults: IServerDefaults;
  limits: IServerLimits;
  aws_configured: boolean;
  /** The file types a job can run, with their dot (e.g. `.ipynb`, `.R`). */
  extensions: string[];
  /** The spending cap and the figures now (absent from an older server). */
  budget?: ISpendFigures;
  /** What the server does with local schedules (absent from an older server). */
  schedules?: IScheduleSettings;
}

/** `GET config` `schedules`. */
export interface IScheduleSettings {
  /**
   * `c.AWSJobs.missed_run_grace_minutes`: a local schedule's run missed
   * while the server was down fires once at start if younger than this.
   */
  missed_run_grace_minutes: number;
}

/**
 * `GET config` `budget` (`awsjobs_lab/budget.py` `SpendingCap.figures`): the
 * instances and hourly spend of this server's active jobs on priced backends,
 * the cost so far of today's jobs (the server's local day), and the caps
 * (`c.AWSJobs.max_active_instances`, `max_hourly_spend`; null: no cap).
 */
export interface ISpendFigures {
  active_instances: number;
  hourly_spend: number;
  spend_today: number;
  max_active_instances: number | null;
  max_hourly_spend: number | null;
}

/** An instance type the server would choose. */
export interface IInstanceChoice {
  instance_type: string;
  vcpus: number;
  memory_gib: number;
  hourly_price: number | null;
  price_source?: string | null;
  availability_zone?: string | null;
  spot: boolean;
  /** Its GPUs: how many, the model, memory per GPU (0 and null: none). */
  gpus?: number;
  gpu_model?: string | null;
  gpu_memory_gib?: number;
}

/** `GET instance-types` answer. */
export interface IInstanceTypes {
  choice: IInstanceChoice;
  candidates: IInstanceChoice[];
}

/** `GET instance-types` query. */
export interface IInstanceQuery {
  memory_gib: number;
  cpus: number;
  spot: boolean;
  instance_type?: string;
  gpus?: number;
  gpu_memory_gib?: number;
  gpu_model?: string;
}

/** Front-end settings (`schema/plugin.json`). */
export interface IJobsSettings {
  defaultBackend: string;
  memoryGib: number;
  cpus: number;
  spot: boolean;
  maxLifetimeMinutes: number;
  pollIntervalSeconds: number;
  maxPollIntervalSeconds: number;
  logPollIntervalSeconds: number;
  logTailKiB: number;
  notifyOnEnd: boolean;
  panelArea: PanelArea;
}

/** The side of the shell that holds the Jobs panel. */
export type PanelArea = 'left' | 'right';

export const DEFAULT_SETTINGS: IJobsSettings = {
  defaultBackend: '',
  memoryGib: 4,
  cpus: 2,
  spot: true,
  maxLifetimeMinutes: 240,
  pollIntervalSeconds: 3,
  maxPollIntervalSeconds: 60,
  logPollIntervalSeconds: 1,
  logTailKiB: 256,
  notifyOnEnd: true,
  panelArea: 'right'
};

/** Whether the model's connection to the server works. */
export type ServerStatus = 'unknown' | 'ok' | 'missing' | 'error';

/** The jobs model shared by the panel and the commands. */
export interface IJobsModel {
  readonly jobs: ReadonlyArray<IJob>;
  readonly config: IServerConfig | null;
  readonly serverStatus: ServerStatus;
  readonly error: string | null;
  readonly settings: IJobsSettings;
  readonly stateFilter: ReadonlyArray<JobState>;
  /** Only the jobs of this schedule are listed (null: every job). */
  readonly scheduleFilter: string | null;
  readonly hasMore: boolean;
  readonly selectedId: string | null;
  /** Whether the Jobs panel is shown. */
  readonly visible: boolean;
  readonly changed: ISignal<IJobsModel, void>;
  readonly jobEnded: ISignal<IJobsModel, IJob>;
  readonly tick: ISignal<IJobsModel, number>;
  readonly selectionChanged: ISignal<IJobsModel, string | null>;
  get(id: string): IJob | undefined;
  refresh(): Promise<void>;
  loadMore(): Promise<void>;
  setStateFilter(states: ReadonlyArray<JobState>): void;
  setScheduleFilter(name: string | null): void;
  select(id: string | null): void;
  setVisible(visible: boolean): void;
  submit(request: ILaunchRequest): Promise<IJob>;
  stop(id: string): Promise<IJob>;
  remove(id: string): Promise<void>;
  ensureConfig(): Promise<IServerConfig>;
  clearError(): void;
  readLog(id: string, offset: number, limit?: number): Promise<ILogChunk>;
  instanceTypes(query: IInstanceQuery): Promise<IInstanceTypes>;
}

export const IJobsModel = new Token<IJobsModel>(
  'awsjobs-lab:IJobsModel',
  'The jobs model of awsjobs-lab: the job list, polling and the REST API.'
);
