/**
 * What every command module shares: the application's services and the
 * argument schema and lookup of a command that acts on one job.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { IDocumentManager } from '@jupyterlab/docmanager';
import type {
  IDefaultFileBrowser,
  IFileBrowserFactory
} from '@jupyterlab/filebrowser';
import type { IStateDB } from '@jupyterlab/statedb';
import type { TranslationBundle } from '@jupyterlab/translation';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import type { ISchedulesModel } from '../schedules/tokens';
import type { IJob, IJobsModel } from '../tokens';

export interface ICommandsOptions {
  app: JupyterFrontEnd;
  model: IJobsModel;
  trans: TranslationBundle;
  docManager: IDocumentManager | null;
  fileBrowser: IDefaultFileBrowser | null;
  browserFactory: IFileBrowserFactory | null;
  state: IStateDB | null;
  /** The launch dialog offers "On a schedule" when given. */
  schedules?: ISchedulesModel | null;
}

/** The arguments of a command acting on one job; `confirm` only where it is read. */
export function jobArgs(trans: TranslationBundle, withConfirm: boolean) {
  return {
    args: {
      type: 'object',
      properties: {
        id: {
          type: 'string',
          description: trans.__('The job id (default: the selected job)')
        },
        ...(withConfirm && {
          confirm: {
            type: 'boolean',
            description: trans.__('Ask for confirmation (default true)')
          }
        })
      }
    }
  };
}

/** The job a command is about: its `id` argument, else the selected job. */
export function jobArg(
  model: IJobsModel,
  args: ReadonlyPartialJSONObject
): IJob | null {
  const id = typeof args.id === 'string' ? args.id : model.selectedId;
  return id ? (model.get(id) ?? null) : null;
}
