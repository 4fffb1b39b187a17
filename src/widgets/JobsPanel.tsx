import type { CommandRegistry } from '@lumino/commands';
import type { Message } from '@lumino/messaging';
import type { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import {
  ReactWidget,
  refreshIcon,
  SidePanel,
  Toolbar,
  ToolbarButton,
  UseSignal
} from '@jupyterlab/ui-components';
import { Panel } from '@lumino/widgets';
import * as React from 'react';

import { InstancesView } from '../components/InstancesView';
import { JobDetails } from '../components/JobDetails';
import { JobRow } from '../components/JobList';
import { ScheduleFilterBar, SchedulesView } from '../components/SchedulesView';
import { SpendSummary } from '../components/SpendSummary';
import { stateLabel } from '../format';
import { jobsIcon } from '../icons';
import { instancesOffered, InstancesModel } from '../instances';
import type { ISchedulesModel } from '../schedules/tokens';
import {
  ACTIVE_STATES,
  CommandIDs,
  IJobsModel,
  JOB_STATES,
  JobState,
  PANEL_ID,
  TERMINAL_STATES
} from '../tokens';

/** The shell command that enables the server extension (not translated). */
const ENABLE_COMMAND = 'jupyter server extension enable awsjobs_lab';

/** The filter choices of the panel, as select values. */
export function filterStates(value: string): JobState[] {
  if (value === 'active') {
    return [...ACTIVE_STATES];
  }
  if (value === 'finished') {
    return [...TERMINAL_STATES];
  }
  if ((JOB_STATES as ReadonlyArray<string>).includes(value)) {
    return [value as JobState];
  }
  return [];
}

/** The select value of a filter. */
export function filterValue(states: ReadonlyArray<JobState>): string {
  if (states.length === 0) {
    return 'all';
  }
  if (states.length === 1) {
    return states[0];
  }
  const set = new Set(states);
  if (
    ACTIVE_STATES.every(s => set.has(s)) &&
    set.size === ACTIVE_STATES.length
  ) {
    return 'active';
  }
  if (
    [...TERMINAL_STATES].every(s => set.has(s)) &&
    set.size === TERMINAL_STATES.size
  ) {
    return 'finished';
  }
  return 'all';
}

/** The state filter, in the panel's toolbar. */
export function FilterSelect(props: {
  model: IJobsModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { model, trans } = props;
  return (
    <label className="jp-AWSJobs-filterBar">
      {trans.__('Show')}{' '}
      <select
        className="jp-AWSJobs-filter"
        value={filterValue(model.stateFilter)}
        onChange={event =>
          model.setStateFilter(filterStates(event.target.value))
        }
      >
        <option value="all">{trans.__('All jobs')}</option>
        <option value="active">{trans.__('Active')}</option>
        <option value="finished">{trans.__('Finished')}</option>
        {JOB_STATES.map(state => (
          <option key={state} value={state}>
            {stateLabel(state, trans)}
          </option>
        ))}
      </select>
    </label>
  );
}

interface IViewProps {
  model: IJobsModel;
  commands: CommandRegistry;
  trans: TranslationBundle;
  /** The Instances view's model, when the panel offers that view. */
  instances?: InstancesModel;
  /** The Schedules view's model, when the panel offers that view. */
  schedules?: ISchedulesModel;
}

/** The panel's body. */
export function JobsView(props: IViewProps): JSX.Element {
  const { model, instances, schedules } = props;
  const body = () => <JobsViewBody {...props} />;
  const withSchedules = () =>
    schedules ? (
      <UseSignal signal={schedules.changed}>{body}</UseSignal>
    ) : (
      body()
    );
  return (
    <UseSignal signal={model.changed}>
      {() =>
        instances ? (
          <UseSignal signal={instances.changed}>{withSchedules}</UseSignal>
        ) : (
          withSchedules()
        )
      }
    </UseSignal>
  );
}

type PanelView = 'jobs' | 'schedules' | 'instances';

/** "Jobs | Schedules | Instances": the views the panel offers. */
function ViewTabs(props: {
  instances?: InstancesModel;
  schedules?: ISchedulesModel;
  trans: TranslationBundle;
}): JSX.Element {
  const { instances, schedules, trans } = props;
  const current: PanelView = instances?.shown
    ? 'instances'
    : schedules?.shown
      ? 'schedules'
      : 'jobs';
  const tab = (label: string, view: PanelView) => (
    <button
      role="tab"
      aria-selected={current === view}
      className={`jp-AWSJobs-tab${current === view ? ' jp-mod-current' : ''}`}
      onClick={() => {
        instances?.setShown(view === 'instances');
        schedules?.setShown(view === 'schedules');
      }}
    >
      {label}
    </button>
  );
  return (
    <div className="jp-AWSJobs-tabs" role="tablist">
      {tab(trans.__('Jobs'), 'jobs')}
      {schedules && tab(trans.__('Schedules'), 'schedules')}
      {instances && tab(trans.__('Instances'), 'instances')}
    </div>
  );
}

function JobsViewBody(props: IViewProps): JSX.Element {
  const { model, commands, trans } = props;
  if (model.serverStatus === 'missing') {
    return (
      <div className="jp-AWSJobs-missing" role="alert">
        <p>
          <strong>
            {trans.__('The awsjobs server extension is not running.')}
          </strong>
        </p>
        <p>
          {trans.__(
            'Jobs cannot be listed or launched. Install the awsjobs-lab Python package in the environment that runs Jupyter Server, enable it and restart JupyterLab:'
          )}
        </p>
        <pre>{ENABLE_COMMAND}</pre>
      </div>
    );
  }
  const { instances, schedules } = props;
  // Instances' tab once the server offers them, or to go back from the view.
  const instancesTab =
    instances && (instancesOffered(model.config) || instances.shown);
  const tabs = (instancesTab || schedules) && (
    <ViewTabs
      instances={instancesTab ? instances : undefined}
      schedules={schedules}
      trans={trans}
    />
  );
  const selected = model.selectedId ? model.get(model.selectedId) : undefined;
  const jobs = model.jobs;
  if (instances?.shown) {
    return (
      <div className="jp-AWSJobs-view">
        <SpendSummary config={model.config} trans={trans} />
        {tabs}
        <InstancesView
          instances={instances}
          commands={commands}
          trans={trans}
        />
      </div>
    );
  }
  if (schedules?.shown) {
    return (
      <div className="jp-AWSJobs-view">
        <SpendSummary config={model.config} trans={trans} />
        {tabs}
        <SchedulesView
          schedules={schedules}
          jobs={model}
          commands={commands}
          trans={trans}
        />
      </div>
    );
  }
  return (
    <div className="jp-AWSJobs-view">
      <SpendSummary config={model.config} trans={trans} />
      {tabs}
      <ScheduleFilterBar jobs={model} trans={trans} />
      {model.error && (
        <div className="jp-AWSJobs-errorBar" role="alert">
          <span className="jp-AWSJobs-errorMessage">{model.error}</span>
          <button
            className="jp-AWSJobs-linkButton"
            onClick={() => model.clearError()}
            aria-label={trans.__('Dismiss')}
          >
            {trans.__('Dismiss')}
          </button>
        </div>
      )}
      <ul className="jp-AWSJobs-list" role="listbox">
        {jobs.length === 0 && (
          <li className="jp-AWSJobs-empty">
            {model.serverStatus === 'unknown'
              ? trans.__('Loading jobs…')
              : trans.__(
                  'No jobs. Right-click a notebook or script and choose "Run as Job…".'
                )}
          </li>
        )}
        {jobs.map(job => (
          <JobRow
            key={job.id}
            job={job}
            model={model}
            commands={commands}
            trans={trans}
            selected={job.id === model.selectedId}
          />
        ))}
        {model.hasMore && (
          <li className="jp-AWSJobs-more">
            <button
              className="jp-mod-styled jp-AWSJobs-loadMore"
              onClick={() => void model.loadMore()}
            >
              {trans.__('Load more')}
            </button>
          </li>
        )}
      </ul>
      {model.selectedId &&
        (selected ? (
          <JobDetails
            key={selected.id}
            job={selected}
            model={model}
            commands={commands}
            trans={trans}
          />
        ) : (
          <div className="jp-AWSJobs-details jp-AWSJobs-empty">
            {trans.__('Loading job…')}
          </div>
        ))}
    </div>
  );
}

export namespace JobsPanel {
  export interface IOptions {
    model: IJobsModel;
    commands: CommandRegistry;
    trans: TranslationBundle;
    translator: ITranslator;
    /** The Instances view's model (no Instances view without it). */
    instances?: InstancesModel;
    /** The Schedules view's model (no Schedules view without it). */
    schedules?: ISchedulesModel;
  }
}

/** The Jobs side panel. */
export class JobsPanel extends SidePanel {
  constructor(options: JobsPanel.IOptions) {
    // A plain panel as content: one section, no accordion title.
    const content = new Panel();
    content.addClass('jp-AWSJobs-content');
    super({ translator: options.translator, content });
    const { model, commands, trans } = options;
    this._model = model;
    this.id = PANEL_ID;
    this.addClass('jp-AWSJobs-panel');
    this.title.icon = jobsIcon;
    this.title.caption = trans.__('Jobs');
    const heading = ReactWidget.create(
      <h2 className="jp-AWSJobs-title">{trans.__('Jobs')}</h2>
    );
    heading.addClass('jp-AWSJobs-heading');
    this.header.addWidget(heading);
    const filter = ReactWidget.create(
      <UseSignal signal={model.changed}>
        {() => <FilterSelect model={model} trans={trans} />}
      </UseSignal>
    );
    filter.addClass('jp-AWSJobs-filterItem');
    this.toolbar.addItem('filter', filter);
    this.toolbar.addItem('spacer', Toolbar.createSpacerItem());
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: trans.__('Refresh the job list'),
        onClick: () => {
          void commands.execute(CommandIDs.refresh);
        }
      })
    );
    const body = ReactWidget.create(
      <JobsView
        model={model}
        commands={commands}
        trans={trans}
        instances={options.instances}
        schedules={options.schedules}
      />
    );
    body.addClass('jp-AWSJobs-body');
    body.title.label = trans.__('Jobs');
    this.addWidget(body);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._model.setVisible(true);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._model.setVisible(false);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._model.setVisible(this.isVisible);
  }

  protected onBeforeDetach(msg: Message): void {
    this._model.setVisible(false);
    super.onBeforeDetach(msg);
  }

  private _model: IJobsModel;
}
