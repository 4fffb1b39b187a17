import type { TranslationBundle } from '@jupyterlab/translation';
import {
  checkIcon,
  circleEmptyIcon,
  closeIcon,
  LabIcon,
  runningIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { stateClass, stateLabel, stateTone } from '../format';
import type { JobState } from '../tokens';

/** The icon of a state. */
export function stateIcon(state: JobState): LabIcon {
  switch (state) {
    case 'succeeded':
      return checkIcon;
    case 'failed':
    case 'timed_out':
    case 'interrupted':
      return closeIcon;
    case 'stopping':
    case 'stopped':
      return stopIcon;
    case 'launching':
    case 'running':
      return runningIcon;
    default:
      return circleEmptyIcon;
  }
}

/** A coloured state label with its icon. */
export function StateBadge(props: {
  state: JobState;
  trans: TranslationBundle;
}): JSX.Element {
  const { state, trans } = props;
  const Icon = stateIcon(state);
  return (
    <span
      className={`jp-AWSJobs-stateBadge ${stateClass(state)}`}
      data-state={state}
      data-tone={stateTone(state)}
      title={stateLabel(state, trans)}
    >
      <Icon.react
        tag="span"
        className="jp-AWSJobs-stateIcon"
        width="12px"
        height="12px"
      />
      <span className="jp-AWSJobs-stateLabel">{stateLabel(state, trans)}</span>
    </span>
  );
}
