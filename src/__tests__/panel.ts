/**
 * A Jobs panel attached to the document, on a model of the mocked server
 * (`mockServer` in ./fixtures), loaded once: what the panel specs start from.
 */
import { nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { JobsModel } from '../model';
import { JobsService } from '../service';
import { JobsPanel } from '../widgets/JobsPanel';
import { settings } from './fixtures';

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

export async function openJobsPanel(): Promise<{
  model: JobsModel;
  panel: JobsPanel;
}> {
  const model = new JobsModel({
    service: new JobsService(settings()),
    autoStart: false
  });
  const panel = new JobsPanel({
    model,
    commands: new CommandRegistry(),
    trans: nullTranslator.load('awsjobs_lab'),
    translator: nullTranslator
  });
  Widget.attach(panel, document.body);
  await sleep(100);
  await model.refresh();
  await sleep(300);
  return { model, panel };
}
