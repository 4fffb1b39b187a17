import type { TranslationBundle } from '@jupyterlab/translation';

import { formatDuration } from './format';
import type { IJob, ITransition, JobPhase } from './tokens';

/**
 * Launch phases (the server's `phases.py`): what an active job waits for now,
 * finer than its state. A phase entry of the history has a `phase`; a phase
 * ends at the next phase entry or at a move other than launching → running.
 */

/** A phase, as people read it. */
export function phaseLabel(phase: JobPhase, trans: TranslationBundle): string {
  switch (phase) {
    case 'requesting':
      return trans.__('requesting');
    case 'booting':
      return trans.__('booting');
    case 'preparing':
      return trans.__('preparing');
    case 'running':
      return trans.__('running');
    case 'finishing':
      return trans.__('finishing');
    default:
      return phase;
  }
}

/** What each phase means, for a tooltip. */
export function phaseHint(phase: JobPhase, trans: TranslationBundle): string {
  switch (phase) {
    case 'requesting':
      return trans.__('Choosing an instance type and asking AWS for capacity');
    case 'booting':
      return trans.__(
        'The instance is starting; its SSM agent has not registered yet'
      );
    case 'preparing':
      return trans.__(
        'The job was handed over: mounting the shared files, staging inputs'
      );
    case 'running':
      return trans.__("The job's script is running");
    case 'finishing':
      return trans.__('The script ended: collecting the exit code and outputs');
    default:
      return '';
  }
}

/** `booting · 0:41` while the job is in a phase, else ''. */
export function phaseText(
  job: IJob,
  nowSeconds: number,
  trans: TranslationBundle
): string {
  if (!job.phase) {
    return '';
  }
  const since = job.phase_since ?? null;
  const elapsed = since === null ? '' : formatDuration(nowSeconds - since);
  const label = phaseLabel(job.phase, trans);
  return elapsed ? `${label} · ${elapsed}` : label;
}

/** Seconds spent in each phase, summed over attempts, in the order entered. */
export function phaseDurations(
  history: ITransition[],
  untilSeconds: number
): Array<[JobPhase, number]> {
  const spent = new Map<JobPhase, number>();
  let current: [JobPhase, number] | null = null;
  const close = (at: number) => {
    if (current) {
      const [phase, since] = current;
      spent.set(phase, (spent.get(phase) ?? 0) + Math.max(0, at - since));
      current = null;
    }
  };
  for (const entry of history) {
    if (entry.phase || entry.state !== 'running') {
      close(entry.at);
    }
    if (entry.phase) {
      current = [entry.phase, entry.at];
      if (!spent.has(entry.phase)) {
        spent.set(entry.phase, 0);
      }
    }
  }
  close(untilSeconds);
  return Array.from(spent.entries());
}
