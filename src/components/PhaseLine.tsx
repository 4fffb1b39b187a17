import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { formatDuration } from '../format';
import { phaseDurations, phaseHint, phaseLabel, phaseText } from '../phases';
import type { IJob } from '../tokens';

/** The phase of an active job and how long it has lasted: `booting · 0:41`. */
export function PhaseLine(props: {
  job: IJob;
  now: number;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { job, now, trans } = props;
  const text = phaseText(job, now, trans);
  if (!job.phase || !text) {
    return null;
  }
  return (
    <span
      className="jp-AWSJobs-phase"
      data-phase={job.phase}
      title={phaseHint(job.phase, trans)}
    >
      {text}
    </span>
  );
}

/** How long each phase of a finished job took: `requesting 0:02 · booting 0:31`. */
export function PhaseDurations(props: {
  job: IJob;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { job, trans } = props;
  const until = job.finished_at ?? job.updated_at;
  const spent = phaseDurations(job.history, until);
  if (spent.length === 0) {
    return null;
  }
  return (
    <span className="jp-AWSJobs-phaseDurations">
      {spent.map(([phase, seconds], i) => (
        <span
          key={phase}
          className="jp-AWSJobs-phaseDuration"
          data-phase={phase}
          title={phaseHint(phase, trans)}
        >
          {i > 0 ? ' · ' : ''}
          {`${phaseLabel(phase, trans)} ${formatDuration(seconds)}`}
        </span>
      ))}
    </span>
  );
}
