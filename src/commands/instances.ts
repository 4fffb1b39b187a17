/**
 * The commands of the Instances view: show it, and terminate instances of
 * this tool behind a confirmation that names them and their cost so far.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { TranslationBundle } from '@jupyterlab/translation';

import { InstancesModel, terminateQuestion } from '../instances';
import { CommandIDs, PANEL_ID } from '../tokens';
import { confirmThenAct } from './confirm';

export interface IInstanceCommandsOptions {
  app: JupyterFrontEnd;
  instances: InstancesModel;
  trans: TranslationBundle;
}

/** The ids of a command's `ids` argument that are rows of the view. */
function listedRows(instances: InstancesModel, ids: unknown) {
  const wanted = new Set(
    Array.isArray(ids) ? ids.filter(id => typeof id === 'string') : []
  );
  return instances.rows.filter(r => wanted.has(r.instance_id));
}

export function registerInstanceCommands(
  options: IInstanceCommandsOptions
): void {
  const { app, instances, trans } = options;
  const { commands, shell } = app;

  commands.addCommand(CommandIDs.showInstances, {
    describedBy: { args: { type: 'object', properties: {} } },
    label: trans.__('Show EC2 Instances'),
    caption: trans.__(
      'The instances this tool is paying for, orphans first; terminate them from the Jobs panel'
    ),
    execute: () => {
      instances.setShown(true);
      shell.activateById(PANEL_ID);
    }
  });

  commands.addCommand(CommandIDs.terminateInstances, {
    describedBy: {
      args: {
        type: 'object',
        properties: {
          ids: {
            type: 'array',
            items: { type: 'string' },
            description: trans.__(
              'Instance ids, as listed in the Instances view'
            )
          },
          confirm: {
            type: 'boolean',
            description: trans.__('Ask for confirmation (default true)')
          }
        }
      }
    },
    label: trans.__('Terminate Instances…'),
    isEnabled: args => listedRows(instances, args.ids).length > 0,
    execute: args => {
      // Only rows the server listed as ours: the view never offers anything else.
      const rows = listedRows(instances, args.ids);
      if (!rows.length) {
        return false;
      }
      return confirmThenAct({
        ask: args.confirm !== false,
        title: trans._n(
          'Terminate instance?',
          'Terminate %1 instances?',
          rows.length
        ),
        body: terminateQuestion(rows, Date.now() / 1000, trans),
        acceptLabel: trans.__('Terminate'),
        act: () => instances.terminate(rows.map(r => r.instance_id)),
        failure: error => trans.__('Could not terminate: %1', error),
        trans
      });
    }
  });
}
