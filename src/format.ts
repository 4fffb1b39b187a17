/**
 * Pure presentation helpers: state → label/class, elapsed time, cost, paths.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import { IAttempt, IJob, isActiveState, JobState } from './tokens';

/** The extension of a path, lower case with its dot ('' when none). */
export function extensionOf(path: string): string {
  const name = basename(path);
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot).toLowerCase() : '';
}

/**
 * Whether a file can be run as a job, given the server's file types
 * (`GET config` `extensions`); the case of the extension does not matter.
 */
export function isSupportedPath(
  path: string,
  extensions: ReadonlyArray<string>
): boolean {
  const extension = extensionOf(path);
  return (
    extension !== '' && extensions.some(e => e.toLowerCase() === extension)
  );
}

/** Whether the file is a notebook (parameters apply). */
export function isNotebookPath(path: string): boolean {
  return extensionOf(path) === '.ipynb';
}

/** Whether the file is a report (R Markdown, Quarto): it takes parameters. */
export function isReportPath(path: string): boolean {
  return ['.rmd', '.qmd'].includes(extensionOf(path));
}

export function basename(path: string): string {
  const parts = path.split('/');
  return parts[parts.length - 1] || path;
}

export function dirname(path: string): string {
  const index = path.lastIndexOf('/');
  return index > 0 ? path.slice(0, index) : '';
}

/** The server's default log path: `<script dir>/<stem>.<job id>.log`. */
export function defaultLogPathHint(path: string, idHint = '<job id>'): string {
  const name = basename(path);
  const dot = name.lastIndexOf('.');
  const stem = dot > 0 ? name.slice(0, dot) : name;
  const dir = dirname(path);
  return `${dir ? dir + '/' : ''}${stem}.${idHint}.log`;
}

/** The kind of a state, for colour: active, good, bad or neutral. */
export type StateTone = 'active' | 'success' | 'error' | 'warn' | 'neutral';

const TONES: { [state in JobState]: StateTone } = {
  pending: 'neutral',
  launching: 'active',
  running: 'active',
  stopping: 'warn',
  succeeded: 'success',
  failed: 'error',
  stopped: 'neutral',
  timed_out: 'error',
  interrupted: 'warn'
};

export function stateTone(state: JobState): StateTone {
  return TONES[state] ?? 'neutral';
}

/** The CSS classes for a state: one per state and one per tone. */
export function stateClass(state: JobState): string {
  return `jp-AWSJobs-state-${state.replace('_', '-')} jp-AWSJobs-tone-${stateTone(state)}`;
}

/** The user-facing label of a state (translated). */
export function stateLabel(state: JobState, trans: TranslationBundle): string {
  switch (state) {
    case 'pending':
      return trans.__('Pending');
    case 'launching':
      return trans.__('Launching');
    case 'running':
      return trans.__('Running');
    case 'stopping':
      return trans.__('Stopping');
    case 'succeeded':
      return trans.__('Succeeded');
    case 'failed':
      return trans.__('Failed');
    case 'stopped':
      return trans.__('Stopped');
    case 'timed_out':
      return trans.__('Timed out');
    case 'interrupted':
      return trans.__('Interrupted');
    default:
      return String(state);
  }
}

/**
 * Seconds the job has been working at `nowSeconds`: from `started_at` to
 * `finished_at`, or to now while it is active; null before it started.
 */
export function elapsedSeconds(job: IJob, nowSeconds: number): number | null {
  if (job.started_at === null || job.started_at === undefined) {
    return null;
  }
  let end: number;
  if (job.finished_at !== null && job.finished_at !== undefined) {
    end = job.finished_at;
  } else if (isActiveState(job.state)) {
    end = nowSeconds;
  } else {
    // Terminal without a finish time: trust the server's figure.
    return job.elapsed_seconds;
  }
  return Math.max(0, end - job.started_at);
}

/** What one attempt has cost by `nowSeconds` (its own cost once ended). */
function attemptCost(attempt: IAttempt, nowSeconds: number): number | null {
  if (attempt.ended_at !== null) {
    return attempt.cost;
  }
  if (attempt.hourly_price === null || attempt.started_at === null) {
    return null;
  }
  const seconds = Math.max(0, nowSeconds - attempt.started_at);
  return (attempt.hourly_price * seconds) / 3600;
}

/**
 * Cost so far in USD: the sum over the job's attempts (a spot job relaunched
 * after an interruption has several), else hourly price × elapsed time; null
 * when unknown.
 */
export function costSoFar(job: IJob, nowSeconds: number): number | null {
  if (job.attempts && job.attempts.length > 0) {
    const known = job.attempts
      .map(a => attemptCost(a, nowSeconds))
      .filter((c): c is number => c !== null);
    return known.length ? known.reduce((sum, c) => sum + c, 0) : null;
  }
  if (job.hourly_price === null || job.hourly_price === undefined) {
    return null;
  }
  const elapsed = elapsedSeconds(job, nowSeconds);
  if (elapsed === null) {
    return null;
  }
  return (job.hourly_price * elapsed) / 3600;
}

/** "spot" or "on-demand" (translated). */
export function marketLabel(spot: boolean, trans: TranslationBundle): string {
  return spot ? trans.__('spot') : trans.__('on-demand');
}

/**
 * "attempt 2 of 3 (spot interrupted, now on-demand)" for a job past its first
 * attempt (the server's `attempt_note` says the same in the history and the
 * log); null while it is on its first.
 */
export function attemptNote(
  job: IJob,
  trans: TranslationBundle
): string | null {
  const attempts = job.attempts ?? [];
  if (attempts.length < 2) {
    return null;
  }
  const current = attempts[attempts.length - 1];
  return trans.__(
    'attempt %1 of %2 (spot interrupted, now %3)',
    current.number,
    job.max_attempts,
    marketLabel(current.spot, trans)
  );
}

/** `1:02:03`, `2:03` or `0:05`. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !isFinite(seconds)) {
    return '';
  }
  const total = Math.floor(Math.max(0, seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** `$0.0123` below a dollar, `$12.35` above. */
export function formatCost(usd: number | null): string {
  if (usd === null || !isFinite(usd)) {
    return '';
  }
  return usd < 1 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

/** `$0.0832/h`. */
export function formatPrice(usdPerHour: number | null | undefined): string {
  if (
    usdPerHour === null ||
    usdPerHour === undefined ||
    !isFinite(usdPerHour)
  ) {
    return '';
  }
  return `$${usdPerHour.toFixed(4)}/h`;
}

/** What one EC2 launch will offer (`GET instance-types` → `tried`). */
export interface ILaunchOffer {
  /** The instance types, best first (the first is the preview's choice). */
  types: string[];
  zones: string[];
  /** Type × zone pools in all. */
  pools: number;
  /** EC2 Fleet's allocation strategy. */
  strategy: string;
  spot: boolean;
  /** The lowest known hourly price among the pools. */
  from_price: number | null;
}

/** `$0.061/h`: a price with no trailing zeros past the third decimal. */
export function formatShortPrice(usdPerHour: number): string {
  if (usdPerHour >= 1) {
    return `$${usdPerHour.toFixed(2)}/h`;
  }
  return `$${usdPerHour.toFixed(4).replace(/(\.\d{3}\d*?)0+$/, '$1')}/h`;
}

/**
 * "m7i.xlarge or 9 similar types, 3 zones, from $0.061/h spot": what one
 * launch will try (EC2 Fleet picks the pool).
 */
export function offerSentence(
  offer: ILaunchOffer,
  trans: TranslationBundle
): string {
  const [first, ...others] = offer.types;
  const parts = [
    others.length > 0
      ? trans._n(
          '%2 or %1 similar type',
          '%2 or %1 similar types',
          others.length,
          first
        )
      : first,
    trans._n('%1 zone', '%1 zones', offer.zones.length)
  ];
  const market = marketLabel(offer.spot, trans);
  parts.push(
    offer.from_price === null
      ? market
      : trans.__('from %1 %2', formatShortPrice(offer.from_price), market)
  );
  return parts.join(', ');
}

/** A local date and time from epoch seconds. */
export function formatTime(epochSeconds: number | null): string {
  if (epochSeconds === null || !isFinite(epochSeconds)) {
    return '';
  }
  return new Date(epochSeconds * 1000).toLocaleString();
}

/** Newest first (by creation time, then id for a stable order). */
export function compareNewestFirst(a: IJob, b: IJob): number {
  if (b.created_at !== a.created_at) {
    return b.created_at - a.created_at;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}
