import type { CommandRegistry } from '@lumino/commands';
import type { TranslationBundle } from '@jupyterlab/translation';
import { closeIcon, stopIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { backendLabel, configBackendCan } from '../backends';
import {
  attemptNote,
  basename,
  costSoFar,
  elapsedSeconds,
  formatCost,
  formatDuration
} from '../format';
import { CommandIDs, IJob, IJobsModel, isActiveState } from '../tokens';
import { transferText } from '../transfer';
import { PhaseLine } from './PhaseLine';
import { StateBadge } from './StateBadge';
import { useNow } from './useNow';

export interface IJobRowProps {
  job: IJob;
  model: IJobsModel;
  commands: CommandRegistry;
  trans: TranslationBundle;
  selected: boolean;
}

/** One job in the list. */
export function JobRow(props: IJobRowProps): JSX.Element {
  const { job, model, commands, trans, selected } = props;
  const active = isActiveState(job.state);
  const now = useNow(model, active);
  const elapsed = elapsedSeconds(job, now);
  const cost = costSoFar(job, now);
  const note = attemptNote(job, trans);
  const transfer = transferText(job.progress, trans);
  const onKey = (event: React.KeyboardEvent) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      model.select(job.id);
    }
  };
  return (
    <li
      className={`jp-AWSJobs-job${selected ? ' jp-mod-selected' : ''}`}
      data-job-id={job.id}
      data-state={job.state}
      aria-selected={selected}
      role="option"
      tabIndex={0}
      onClick={() => model.select(job.id)}
      onKeyDown={onKey}
      title={job.path}
    >
      <div className="jp-AWSJobs-jobLine">
        <span className="jp-AWSJobs-jobName">{basename(job.path)}</span>
        <StateBadge state={job.state} trans={trans} />
      </div>
      <div className="jp-AWSJobs-jobLine jp-AWSJobs-jobMeta">
        <span className="jp-AWSJobs-badge jp-AWSJobs-backend">
          {backendLabel(model.config, job.backend)}
        </span>
        {job.instance_type && (
          <span className="jp-AWSJobs-badge jp-AWSJobs-instanceType">
            {job.instance_type}
          </span>
        )}
        {job.spot && configBackendCan(model.config, job.backend, 'spot') && (
          <span className="jp-AWSJobs-badge jp-AWSJobs-spot">
            {trans.__('spot')}
          </span>
        )}
        {job.schedule && (
          <span
            className="jp-AWSJobs-badge jp-AWSJobs-scheduleBadge"
            title={trans.__('Started by the schedule %1', job.schedule)}
          >
            {job.schedule}
          </span>
        )}
        {note && (
          <span className="jp-AWSJobs-badge jp-AWSJobs-attempt" title={note}>
            {`${job.attempts.length}/${job.max_attempts}`}
          </span>
        )}
        <PhaseLine job={job} now={now} trans={trans} />
        <span className="jp-AWSJobs-elapsed" data-ticking={active}>
          {formatDuration(elapsed)}
        </span>
        {cost !== null && (
          <span className="jp-AWSJobs-cost" title={trans.__('Cost so far')}>
            {formatCost(cost)}
          </span>
        )}
        <span className="jp-AWSJobs-rowActions">
          {active ? (
            <button
              className="jp-AWSJobs-iconButton jp-AWSJobs-stop"
              title={trans.__('Stop job')}
              aria-label={trans.__('Stop job')}
              disabled={job.state === 'stopping'}
              onClick={event => {
                event.stopPropagation();
                void commands.execute(CommandIDs.stopJob, { id: job.id });
              }}
            >
              <stopIcon.react tag="span" width="14px" height="14px" />
            </button>
          ) : (
            <button
              className="jp-AWSJobs-iconButton jp-AWSJobs-remove"
              title={trans.__('Remove job')}
              aria-label={trans.__('Remove job')}
              onClick={event => {
                event.stopPropagation();
                void commands.execute(CommandIDs.deleteJob, { id: job.id });
              }}
            >
              <closeIcon.react tag="span" width="14px" height="14px" />
            </button>
          )}
        </span>
      </div>
      {transfer && (
        <div className="jp-AWSJobs-jobLine jp-AWSJobs-transfer">{transfer}</div>
      )}
    </li>
  );
}
