import type { CommandRegistry } from '@lumino/commands';
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { backendLabel } from '../backends';
import {
  attemptNote,
  basename,
  costSoFar,
  elapsedSeconds,
  formatCost,
  formatDuration,
  formatPrice,
  formatTime,
  marketLabel,
  stateLabel
} from '../format';
import {
  CommandIDs,
  IAttempt,
  IJob,
  IJobsModel,
  isActiveState
} from '../tokens';
import { transferText } from '../transfer';
import { LogView } from '../widgets/LogView';
import { phaseDurations, phaseLabel } from '../phases';
import { PhaseDurations, PhaseLine } from './PhaseLine';
import { StateBadge } from './StateBadge';
import { useNow } from './useNow';

export interface IJobDetailsProps {
  job: IJob;
  model: IJobsModel;
  commands: CommandRegistry;
  trans: TranslationBundle;
}

function Row(props: {
  label: string;
  name: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <>
      <dt>{props.label}</dt>
      <dd data-field={props.name}>{props.children}</dd>
    </>
  );
}

/** The instances a job ran on, one line per attempt. */
function Attempts(props: {
  attempts: IAttempt[];
  trans: TranslationBundle;
}): JSX.Element {
  const { attempts, trans } = props;
  return (
    <details className="jp-AWSJobs-attempts">
      <summary>{trans.__('Attempts')}</summary>
      <ol>
        {attempts.map(a => (
          <li key={a.number} data-outcome={a.outcome ?? 'current'}>
            {[
              a.instance_type ?? '—',
              marketLabel(a.spot, trans),
              a.availability_zone,
              a.instance_id,
              a.outcome ? stateLabel(a.outcome, trans) : trans.__('current'),
              formatCost(a.cost)
            ]
              .filter(Boolean)
              .join(' · ')}
            {a.started_at !== null ? ` — ${formatTime(a.started_at)}` : ''}
          </li>
        ))}
      </ol>
    </details>
  );
}

/** The selected job: its details, actions, history and live log. */
export function JobDetails(props: IJobDetailsProps): JSX.Element {
  const { job, model, commands, trans } = props;
  const active = isActiveState(job.state);
  const now = useNow(model, active);
  const elapsed = elapsedSeconds(job, now);
  const cost = costSoFar(job, now);
  const note = attemptNote(job, trans);
  const transfer = transferText(job.progress, trans);
  const attempts = job.attempts ?? [];
  const onSpot = attempts.length
    ? attempts[attempts.length - 1].spot
    : job.spot;
  const run = (id: string) => () => {
    void commands.execute(id, { id: job.id });
  };
  return (
    <div
      className="jp-AWSJobs-details"
      data-job-id={job.id}
      data-state={job.state}
    >
      <div className="jp-AWSJobs-summary">
        <div className="jp-AWSJobs-detailsHeader">
          <span className="jp-AWSJobs-detailsName" title={job.path}>
            {basename(job.path)}
          </span>
          <StateBadge state={job.state} trans={trans} />
          <PhaseLine job={job} now={now} trans={trans} />
        </div>
        <div className="jp-AWSJobs-actions">
          {active && (
            <button
              className="jp-mod-styled jp-mod-warn jp-AWSJobs-stopButton"
              disabled={job.state === 'stopping'}
              onClick={run(CommandIDs.stopJob)}
            >
              {job.state === 'stopping'
                ? trans.__('Stopping…')
                : trans.__('Stop')}
            </button>
          )}
          {job.output_path && (
            <button
              className="jp-mod-styled jp-AWSJobs-openOutput"
              onClick={run(CommandIDs.openOutput)}
            >
              {trans.__('Open output')}
            </button>
          )}
          <button
            className="jp-mod-styled jp-AWSJobs-openLog"
            onClick={run(CommandIDs.openLog)}
          >
            {trans.__('Open log file')}
          </button>
          <button
            className="jp-mod-styled jp-AWSJobs-rerun"
            onClick={run(CommandIDs.rerunJob)}
          >
            {trans.__('Re-run…')}
          </button>
          {!active && (
            <button
              className="jp-mod-styled jp-AWSJobs-removeButton"
              onClick={run(CommandIDs.deleteJob)}
            >
              {trans.__('Remove')}
            </button>
          )}
        </div>
        <dl className="jp-AWSJobs-fields">
          <Row label={trans.__('Path')} name="path">
            {job.path}
          </Row>
          {job.schedule && (
            <Row label={trans.__('Schedule')} name="schedule">
              {job.schedule}
            </Row>
          )}
          <Row label={trans.__('Backend')} name="backend">
            {backendLabel(model.config, job.backend)}
          </Row>
          {job.instance_type && (
            <Row label={trans.__('Instance')} name="instance">
              {job.instance_type}
              {onSpot ? ` (${trans.__('spot')})` : ''}
              {job.hourly_price !== null
                ? ` · ${formatPrice(job.hourly_price)}`
                : ''}
              {job.instance_id ? ` · ${job.instance_id}` : ''}
            </Row>
          )}
          {note && (
            <Row label={trans.__('Attempt')} name="attempt">
              {note}
            </Row>
          )}
          <Row label={trans.__('Resources')} name="resources">
            {trans.__(
              '%1 GiB · %2 CPUs · max %3 min',
              job.memory_gib,
              job.cpus,
              job.max_lifetime_minutes
            )}
          </Row>
          <Row label={trans.__('Elapsed')} name="elapsed">
            {formatDuration(elapsed) || '—'}
            {cost !== null ? ` · ${formatCost(cost)}` : ''}
          </Row>
          {job.command.length > 0 && (
            <Row label={trans.__('Command')} name="command">
              <code>{job.command.join(' ')}</code>
            </Row>
          )}
          {job.exit_code !== null && (
            <Row label={trans.__('Exit code')} name="exit_code">
              {job.exit_code}
            </Row>
          )}
          {transfer && (
            <Row label={trans.__('Files')} name="progress">
              {transfer}
            </Row>
          )}
          {(job.notes ?? []).length > 0 && (
            <Row label={trans.__('Notes')} name="notes">
              {(job.notes ?? []).map(text => (
                <div key={text}>{text}</div>
              ))}
            </Row>
          )}
          {job.error && (
            <Row label={trans.__('Error')} name="error">
              <span className="jp-AWSJobs-errorText">{job.error}</span>
            </Row>
          )}
          {job.output_path && (
            <Row label={trans.__('Output')} name="output_path">
              {job.output_path}
            </Row>
          )}
          {!active && phaseDurations(job.history, 0).length > 0 && (
            <Row label={trans.__('Phases')} name="phases">
              <PhaseDurations job={job} trans={trans} />
            </Row>
          )}
          <Row label={trans.__('Log file')} name="log_path">
            {job.log_path}
          </Row>
          <Row label={trans.__('Job id')} name="id">
            <code>{job.id}</code>
          </Row>
        </dl>
        {attempts.length > 1 && <Attempts attempts={attempts} trans={trans} />}
        {job.history.length > 0 && (
          <details className="jp-AWSJobs-history">
            <summary>{trans.__('History')}</summary>
            <ol>
              {job.history.map((t, i) => (
                <li key={i} data-state={t.state}>
                  <span className="jp-AWSJobs-historyTime">
                    {formatTime(t.at)}
                  </span>{' '}
                  <strong>
                    {t.phase
                      ? phaseLabel(t.phase, trans)
                      : stateLabel(t.state, trans)}
                  </strong>
                  {t.reason ? ` — ${t.reason}` : ''}
                </li>
              ))}
            </ol>
          </details>
        )}
      </div>
      <LogView
        model={model}
        job={job}
        trans={trans}
        onOpenFile={run(CommandIDs.openLog)}
      />
    </div>
  );
}
