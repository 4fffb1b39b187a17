import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import {
  IDefaultFileBrowser,
  IFileBrowserFactory
} from '@jupyterlab/filebrowser';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

// The model, the panel and the commands are all created in `activate`, so
// these modules are needed at start-up anyway.
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { registerCommands } from './commands';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { registerInstanceCommands } from './commands/instances';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { createInstancesStatus } from './components/InstancesStatus';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { basename, stateLabel } from './format';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { InstancesModel, runningFigures } from './instances';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { JobsModel } from './model';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { registerScheduleCommands } from './schedules/commands';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { SchedulesModel } from './schedules/model';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { SchedulesService } from './schedules/service';
import { ISchedulesModel } from './schedules/tokens';
import { oneViewAtATime } from './schedules/views';
import { JobsService } from './service';
import {
  CommandIDs,
  DEFAULT_SETTINGS,
  IJob,
  IJobsModel,
  IJobsSettings,
  PANEL_ID,
  PluginIDs,
  StateKeys
} from './tokens';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { JobsPanel } from './widgets/JobsPanel';
import { followPanelArea } from './widgets/placement';

/** Read the composite settings into typed values. */
export function readSettings(composite: {
  [key: string]: unknown;
}): Partial<IJobsSettings> {
  const out: { [key: string]: unknown } = {};
  for (const key of Object.keys(DEFAULT_SETTINGS)) {
    const value = composite[key];
    const expected = typeof DEFAULT_SETTINGS[key as keyof IJobsSettings];
    if (value !== undefined && value !== null && typeof value === expected) {
      out[key] = value;
    }
  }
  return out as Partial<IJobsSettings>;
}

/** The settings plugin: owns the model, its settings and its polling. */
const modelPlugin: JupyterFrontEndPlugin<IJobsModel> = {
  id: PluginIDs.model,
  description: 'The jobs model of awsjobs-lab, with its settings.',
  autoStart: true,
  provides: IJobsModel,
  optional: [ISettingRegistry, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
  ): IJobsModel => {
    const trans = (translator ?? nullTranslator).load('awsjobs_lab');
    const service = new JobsService(app.serviceManager.serverSettings);
    const model = new JobsModel({ service });
    if (settingRegistry) {
      // Not awaited: the model starts with the defaults and updates.
      settingRegistry
        .load(PluginIDs.model)
        .then(settings => {
          const apply = () =>
            model.updateSettings(
              readSettings(settings.composite as { [key: string]: unknown })
            );
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          Notification.warning(
            trans.__('Jobs: cannot load the settings: %1', String(reason))
          );
        });
    }
    return model;
  }
};

/** The schedules model and the Schedules view's commands. */
const schedulesPlugin: JupyterFrontEndPlugin<ISchedulesModel> = {
  id: PluginIDs.schedules,
  description: 'The job schedules of awsjobs-lab and their commands.',
  autoStart: true,
  requires: [IJobsModel],
  optional: [ITranslator, ICommandPalette],
  provides: ISchedulesModel,
  activate: (
    app: JupyterFrontEnd,
    jobs: IJobsModel,
    translator: ITranslator | null,
    palette: ICommandPalette | null
  ): ISchedulesModel => {
    const trans = (translator ?? nullTranslator).load('awsjobs_lab');
    const schedules = new SchedulesModel({
      service: new SchedulesService(app.serviceManager.serverSettings),
      jobs
    });
    registerScheduleCommands({ app, jobs, schedules, trans });
    palette?.addItem({
      command: CommandIDs.showSchedules,
      category: trans.__('Jobs')
    });
    return schedules;
  }
};

const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: PluginIDs.panel,
  description: 'The Jobs side panel of awsjobs-lab.',
  autoStart: true,
  requires: [IJobsModel],
  optional: [
    ILayoutRestorer,
    ITranslator,
    IStateDB,
    ICommandPalette,
    IStatusBar,
    ISchedulesModel
  ],
  activate: (
    app: JupyterFrontEnd,
    model: IJobsModel,
    restorer: ILayoutRestorer | null,
    translator: ITranslator | null,
    state: IStateDB | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    schedules: ISchedulesModel | null
  ): void => {
    const trans = (translator ?? nullTranslator).load('awsjobs_lab');
    const instances = new InstancesModel({
      service: new JobsService(app.serviceManager.serverSettings),
      jobs: model
    });
    registerInstanceCommands({ app, instances, trans });
    palette?.addItem({
      command: CommandIDs.showInstances,
      category: trans.__('Jobs')
    });
    statusBar?.registerStatusItem('awsjobs-lab:instances', {
      item: createInstancesStatus(instances, trans, () => {
        void app.commands.execute(CommandIDs.showInstances);
      }),
      align: 'left',
      rank: 50,
      isActive: () => runningFigures(instances.rows).count > 0,
      activeStateChanged: instances.changed
    });
    const panel = new JobsPanel({
      model,
      commands: app.commands,
      trans,
      translator: translator ?? nullTranslator,
      instances,
      schedules: schedules ?? undefined
    });
    if (schedules) {
      oneViewAtATime(instances, schedules);
    }
    // The right area by default, so the file browser stays in view beside the jobs.
    followPanelArea(app.shell, panel, model);
    if (restorer) {
      restorer.add(panel, PANEL_ID);
    }

    // Remember the selected job across reloads.
    if (state) {
      void app.restored
        .then(() => state.fetch(StateKeys.selectedJob))
        .then(value => {
          if (typeof value === 'string' && value && !model.selectedId) {
            model.select(value);
          }
        })
        .catch(() => undefined)
        .then(() => {
          model.selectionChanged.connect((_, id) => {
            void state
              .save(StateKeys.selectedJob, id ?? '')
              .catch(() => undefined);
          });
        });
    }

    // A notification when a job ends, with an action to open it.
    model.jobEnded.connect((_, job: IJob) => {
      if (!model.settings.notifyOnEnd) {
        return;
      }
      const message = trans.__(
        'Job %1: %2',
        basename(job.path),
        stateLabel(job.state, trans)
      );
      const type =
        job.state === 'succeeded'
          ? 'success'
          : job.state === 'stopped'
            ? 'info'
            : job.state === 'interrupted'
              ? 'warning'
              : 'error';
      Notification.emit(message, type, {
        autoClose: type === 'success' || type === 'info' ? 6000 : false,
        actions: [
          {
            label: trans.__('Show job'),
            callback: () => {
              void app.commands.execute(CommandIDs.openPanel, { id: job.id });
            }
          }
        ]
      });
    });
  }
};

const commandsPlugin: JupyterFrontEndPlugin<void> = {
  id: PluginIDs.commands,
  description:
    'Run-as-job commands, their context menu entries and toolbar button.',
  autoStart: true,
  requires: [IJobsModel],
  optional: [
    ITranslator,
    IDocumentManager,
    IDefaultFileBrowser,
    IFileBrowserFactory,
    IStateDB,
    ICommandPalette,
    ISchedulesModel
  ],
  activate: (
    app: JupyterFrontEnd,
    model: IJobsModel,
    translator: ITranslator | null,
    docManager: IDocumentManager | null,
    fileBrowser: IDefaultFileBrowser | null,
    browserFactory: IFileBrowserFactory | null,
    state: IStateDB | null,
    palette: ICommandPalette | null,
    schedules: ISchedulesModel | null
  ): void => {
    const trans = (translator ?? nullTranslator).load('awsjobs_lab');
    registerCommands({
      app,
      model,
      trans,
      docManager,
      fileBrowser,
      browserFactory,
      state,
      schedules
    });
    if (palette) {
      const category = trans.__('Jobs');
      for (const command of [
        CommandIDs.runCurrent,
        CommandIDs.openPanel,
        CommandIDs.refresh
      ]) {
        palette.addItem({ command, category });
      }
    }
  }
};

export default [modelPlugin, schedulesPlugin, panelPlugin, commandsPlugin];

export * from './tokens';
