/**
 * A Jobs panel attached to the document, on a model of the mocked server
 * (`mockServer` in ./fixtures), loaded once: what the panel specs start from;
 * `usePanel()` also disposes the panel, its model and the server after each test.
 */
import { nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { JobsModel } from '../model';
import { JobsService } from '../service';
import { JobsPanel } from '../widgets/JobsPanel';
import { mockServer, settings } from './fixtures';

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

export interface IOpenOptions {
  /** The commands the panel runs (a fresh registry unless given). */
  commands?: CommandRegistry;
}

export async function openJobsPanel(options: IOpenOptions = {}): Promise<{
  model: JobsModel;
  panel: JobsPanel;
}> {
  const model = new JobsModel({
    service: new JobsService(settings()),
    autoStart: false
  });
  const panel = new JobsPanel({
    model,
    commands: options.commands ?? new CommandRegistry(),
    trans: nullTranslator.load('awsjobs_lab'),
    translator: nullTranslator
  });
  Widget.attach(panel, document.body);
  await sleep(100);
  await model.refresh();
  await sleep(300);
  return { model, panel };
}

/** The server, model and panel of the current test, disposed after it. */
export interface IPanelState {
  server: ReturnType<typeof mockServer> | null;
  model: JobsModel | null;
  panel: JobsPanel | null;
  /** Open the panel (`openJobsPanel`), keeping its model and panel here. */
  open(options?: IOpenOptions): Promise<{ model: JobsModel; panel: JobsPanel }>;
}

/**
 * Call in a `describe`: registers an `afterEach` that disposes the panel and
 * model and restores the mocked server the test set in the returned state.
 */
export function usePanel(): IPanelState {
  const state: IPanelState = {
    server: null,
    model: null,
    panel: null,
    async open(options?: IOpenOptions) {
      const opened = await openJobsPanel(options);
      state.model = opened.model;
      state.panel = opened.panel;
      return opened;
    }
  };
  afterEach(() => {
    state.panel?.dispose();
    state.model?.dispose();
    state.server?.restore();
    state.panel = state.model = state.server = null;
  });
  return state;
}
