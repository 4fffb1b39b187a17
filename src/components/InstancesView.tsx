import type { CommandRegistry } from '@lumino/commands';
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import {
  formatCost,
  formatDuration,
  formatPrice,
  formatTime,
  marketLabel
} from '../format';
import {
  canTerminate,
  IInstance,
  instanceCost,
  InstancesModel,
  JOB_ROLE,
  uptimeSeconds
} from '../instances';
import { CommandIDs } from '../tokens';
import { useNow } from './useNow';

interface IViewProps {
  instances: InstancesModel;
  commands: CommandRegistry;
  trans: TranslationBundle;
}

/** Select a job in the list and show the list. */
function showJob(instances: InstancesModel, jobId: string): void {
  instances.jobs.select(jobId);
  instances.setShown(false);
}

/** The badges of a row: orphan, or a role other than a job's worker. */
function RoleBadges(props: {
  row: IInstance;
  trans: TranslationBundle;
}): JSX.Element {
  const { row, trans } = props;
  return (
    <>
      {row.orphan && (
        <span
          className="jp-AWSJobs-badge jp-AWSJobs-orphan"
          title={trans.__('No active job of this server owns it')}
        >
          {trans.__('orphan')}
        </span>
      )}
      {row.role !== JOB_ROLE && (
        <span className="jp-AWSJobs-badge jp-AWSJobs-role">
          {row.role === 'image-builder' ? trans.__('image builder') : row.role}
        </span>
      )}
    </>
  );
}

/** One instance. */
function InstanceRow(
  props: IViewProps & { row: IInstance; now: number }
): JSX.Element {
  const { row, now, instances, commands, trans } = props;
  const facts = [
    row.instance_type ?? '',
    marketLabel(row.spot, trans),
    row.availability_zone ?? ''
  ].filter(Boolean);
  return (
    <li
      className={`jp-AWSJobs-instance${row.orphan ? ' jp-mod-orphan' : ''}`}
      data-instance-id={row.instance_id}
    >
      <div className="jp-AWSJobs-jobLine">
        <span className="jp-AWSJobs-instanceId">{row.instance_id}</span>
        <RoleBadges row={row} trans={trans} />
        <span className="jp-AWSJobs-instanceState">{row.state}</span>
        <span className="jp-AWSJobs-rowActions">
          {canTerminate(row) && (
            <button
              className="jp-mod-styled jp-mod-warn jp-AWSJobs-terminate"
              onClick={() =>
                void commands.execute(CommandIDs.terminateInstances, {
                  ids: [row.instance_id]
                })
              }
            >
              {trans.__('Terminate')}
            </button>
          )}
        </span>
      </div>
      <div className="jp-AWSJobs-jobLine jp-AWSJobs-jobMeta">
        <span>{facts.join(' · ')}</span>
        <span title={trans.__('Launched %1', formatTime(row.launch_time))}>
          {trans.__('up %1', formatDuration(uptimeSeconds(row, now)))}
        </span>
        <span>{formatPrice(row.hourly_price)}</span>
        <span className="jp-AWSJobs-cost" title={trans.__('Cost so far')}>
          {formatCost(instanceCost(row, now))}
        </span>
      </div>
      <div className="jp-AWSJobs-jobLine jp-AWSJobs-jobMeta">
        {row.job_id && (
          <span>
            {trans.__('Job')}{' '}
            <button
              className="jp-AWSJobs-linkButton jp-AWSJobs-instanceJob"
              onClick={() => showJob(instances, row.job_id ?? '')}
            >
              {row.job_id}
            </button>
          </span>
        )}
        {row.expires_at !== null && (
          <span className="jp-AWSJobs-deadline">
            {trans.__('ends by %1', formatTime(row.expires_at))}
          </span>
        )}
      </div>
    </li>
  );
}

/** What the view says instead of rows: loading, the server's message, none. */
function EmptyText(props: {
  instances: InstancesModel;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { instances, trans } = props;
  if (instances.error) {
    return (
      <div
        className="jp-AWSJobs-errorBar jp-AWSJobs-instancesError"
        role="alert"
      >
        {instances.error}
      </div>
    );
  }
  if (instances.rows.length > 0) {
    return null;
  }
  return (
    <div className="jp-AWSJobs-empty">
      {instances.loaded
        ? trans.__('No instances of this tool are running.')
        : trans.__('Loading instances…')}
    </div>
  );
}

/**
 * The Instances view of the Jobs panel: each of this owner's instances,
 * orphans first, with Terminate and "Terminate all orphans".
 */
export function InstancesView(props: IViewProps): JSX.Element {
  const { instances, commands, trans } = props;
  const now = useNow(instances.jobs, true);
  const orphans = instances.rows.filter(r => r.orphan && canTerminate(r));
  return (
    <div className="jp-AWSJobs-instances">
      <div className="jp-AWSJobs-instancesBar">
        <button
          className="jp-mod-styled jp-AWSJobs-refreshInstances"
          onClick={() => void instances.refresh()}
        >
          {trans.__('Refresh')}
        </button>
        {orphans.length > 0 && (
          <button
            className="jp-mod-styled jp-mod-warn jp-AWSJobs-terminateOrphans"
            onClick={() =>
              void commands.execute(CommandIDs.terminateInstances, {
                ids: orphans.map(r => r.instance_id)
              })
            }
          >
            {trans.__('Terminate all orphans')}
          </button>
        )}
      </div>
      <EmptyText instances={instances} trans={trans} />
      <ul className="jp-AWSJobs-instanceList">
        {instances.rows.map(row => (
          <InstanceRow key={row.instance_id} row={row} now={now} {...props} />
        ))}
      </ul>
    </div>
  );
}
