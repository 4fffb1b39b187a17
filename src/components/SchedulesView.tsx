/**
 * The Schedules view of the Jobs panel: each schedule with its reading, next
 * run and last run's state, and Enabled, Run now, Jobs and Delete (all
 * through commands).
 */
import type { CommandRegistry } from '@lumino/commands';
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { basename, formatTime } from '../format';
import { formatRun } from '../schedules/form';
import { lastRun, runTime } from '../schedules/model';
import type {
  ISchedule,
  IScheduleRun,
  ISchedulesModel
} from '../schedules/tokens';
import { CommandIDs, IJobsModel, JOB_STATES, JobState } from '../tokens';
import { StateBadge } from './StateBadge';

interface IViewProps {
  schedules: ISchedulesModel;
  jobs: IJobsModel;
  commands: CommandRegistry;
  trans: TranslationBundle;
}

/** The last run: its state (a link to its job), or "missed", or "none yet". */
function LastRun(props: {
  run: IScheduleRun | null;
  jobs: IJobsModel;
  schedules: ISchedulesModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { run, jobs, schedules, trans } = props;
  if (!run) {
    return <span className="jp-AWSJobs-lastRun">{trans.__('no run yet')}</span>;
  }
  const when = formatTime(runTime(run) || null);
  const state = (JOB_STATES as ReadonlyArray<string>).includes(run.state) ? (
    <StateBadge state={run.state as JobState} trans={trans} />
  ) : (
    <span className="jp-AWSJobs-badge" data-state={run.state}>
      {run.state === 'missed' ? trans.__('missed') : run.state}
    </span>
  );
  const jobId = run.job_id;
  return (
    <span className="jp-AWSJobs-lastRun" data-state={run.state} title={when}>
      {trans.__('Last run')}{' '}
      {jobId ? (
        <button
          className="jp-AWSJobs-linkButton jp-AWSJobs-lastRunJob"
          onClick={() => {
            schedules.setShown(false);
            jobs.select(jobId);
          }}
        >
          {state}
        </button>
      ) : (
        state
      )}
    </span>
  );
}

/** One schedule. */
function ScheduleRow(props: IViewProps & { row: ISchedule }): JSX.Element {
  const { row, schedules, jobs, commands, trans } = props;
  const next = row.next_runs[0];
  const run = (id: string) => () =>
    void commands.execute(id, { name: row.name });
  return (
    <li
      className={`jp-AWSJobs-scheduleRow${row.enabled ? '' : ' jp-mod-disabled'}`}
      data-schedule={row.name}
      data-enabled={row.enabled}
    >
      <div className="jp-AWSJobs-jobLine">
        <span className="jp-AWSJobs-scheduleName">{row.name}</span>
        <label
          className="jp-AWSJobs-scheduleToggle"
          title={
            row.enabled
              ? trans.__('Enabled: click to disable')
              : trans.__('Disabled: click to enable')
          }
        >
          <input
            type="checkbox"
            checked={row.enabled}
            onChange={run(CommandIDs.toggleSchedule)}
          />
          {row.enabled ? trans.__('Enabled') : trans.__('Disabled')}
        </label>
      </div>
      <div className="jp-AWSJobs-jobLine jp-AWSJobs-jobMeta">
        <span className="jp-AWSJobs-scheduleReading" title={row.cron}>
          {row.description || row.cron}
        </span>
        <span title={row.job.path}>{basename(row.job.path)}</span>
      </div>
      <div className="jp-AWSJobs-jobLine jp-AWSJobs-jobMeta">
        <span className="jp-AWSJobs-nextRun">
          {row.enabled && next
            ? trans.__('Next %1', formatRun(next, row.timezone))
            : trans.__('No next run')}
        </span>
        <LastRun
          run={lastRun(row, jobs.jobs)}
          jobs={jobs}
          schedules={schedules}
          trans={trans}
        />
      </div>
      {row.error && (
        <div className="jp-AWSJobs-errorText jp-AWSJobs-scheduleError">
          {row.error}
        </div>
      )}
      <div className="jp-AWSJobs-scheduleActions">
        <button
          className="jp-mod-styled jp-AWSJobs-runSchedule"
          onClick={run(CommandIDs.runSchedule)}
        >
          {trans.__('Run now')}
        </button>
        <button
          className="jp-mod-styled jp-AWSJobs-scheduleJobs"
          onClick={run(CommandIDs.showScheduleJobs)}
        >
          {trans.__('Jobs')}
        </button>
        <button
          className="jp-mod-styled jp-mod-warn jp-AWSJobs-deleteSchedule"
          onClick={run(CommandIDs.deleteSchedule)}
        >
          {trans.__('Delete')}
        </button>
      </div>
    </li>
  );
}

/** What the view says instead of rows: the server's message, loading, none. */
function EmptyText(props: {
  schedules: ISchedulesModel;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { schedules, trans } = props;
  if (schedules.error) {
    return (
      <div
        className="jp-AWSJobs-errorBar jp-AWSJobs-schedulesError"
        role="alert"
      >
        {schedules.error}
      </div>
    );
  }
  if (schedules.rows.length > 0) {
    return null;
  }
  return (
    <div className="jp-AWSJobs-empty">
      {schedules.loaded
        ? trans.__(
            'No schedules. Run a notebook or script as a job and choose "On a schedule".'
          )
        : trans.__('Loading schedules…')}
    </div>
  );
}

export function SchedulesView(props: IViewProps): JSX.Element {
  const { schedules, trans } = props;
  return (
    <div className="jp-AWSJobs-schedules">
      <div className="jp-AWSJobs-instancesBar">
        <button
          className="jp-mod-styled jp-AWSJobs-refreshSchedules"
          onClick={() => void schedules.refresh()}
        >
          {trans.__('Refresh')}
        </button>
      </div>
      <EmptyText schedules={schedules} trans={trans} />
      <ul className="jp-AWSJobs-scheduleList">
        {schedules.rows.map(row => (
          <ScheduleRow key={row.name} row={row} {...props} />
        ))}
      </ul>
    </div>
  );
}

/** Above the job list while it shows one schedule's jobs: which, and a way back. */
export function ScheduleFilterBar(props: {
  jobs: IJobsModel;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { jobs, trans } = props;
  const name = jobs.scheduleFilter;
  if (!name) {
    return null;
  }
  return (
    <div className="jp-AWSJobs-scheduleFilter" data-schedule={name}>
      <span>{trans.__('Jobs of schedule %1', name)}</span>
      <button
        className="jp-AWSJobs-linkButton jp-AWSJobs-clearScheduleFilter"
        onClick={() => jobs.setScheduleFilter(null)}
      >
        {trans.__('Show all jobs')}
      </button>
    </div>
  );
}
