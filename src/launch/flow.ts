/**
 * The launch flow: config → dialog → save the file → submit → the panel.
 * A request the server refuses (4xx) shows the dialog again with its message.
 */
import { Notification } from '@jupyterlab/apputils';
import type { IDocumentManager } from '@jupyterlab/docmanager';
import type { IStateDB } from '@jupyterlab/statedb';
import type { TranslationBundle } from '@jupyterlab/translation';
import type { CommandRegistry } from '@lumino/commands';

import { offeredBackends } from '../backends';
import {
  basename,
  isNotebookPath,
  isReportPath,
  isSupportedPath
} from '../format';
import { ApiError, errorText } from '../handler';
import { initialScheduleForm, scheduleRequest } from '../schedules/form';
import { submitSchedule } from '../schedules/submit';
import type { ISchedulesModel } from '../schedules/tokens';
import {
  CommandIDs,
  IBackendInfo,
  IJob,
  IJobsModel,
  ILaunchRequest,
  IServerConfig
} from '../tokens';
import type { ILaunchForm } from '../validation';
import { showLaunchDialog } from '../widgets/LaunchDialog';
import { initialForm, loadRememberedForm, rememberForm } from './form';
import { ensureSaved } from './unsaved';

/** What the launch flow needs from the application. */
export interface ILaunchDeps {
  model: IJobsModel;
  trans: TranslationBundle;
  commands: CommandRegistry;
  docManager: IDocumentManager | null;
  state: IStateDB | null;
  /** Offers "On a schedule" in the dialog when given. */
  schedules?: ISchedulesModel | null;
}

/** A submit's outcome: the job, or the server's message to show in the form (null: give up). */
type Submitted = { job: IJob } | { retryWith: string | null };

/**
 * Launch `path` as a job: the dialog (prefilled for a re-run) until the user
 * cancels or the server accepts. Resolves with the job, or null.
 */
export async function launchJob(
  deps: ILaunchDeps,
  path: string,
  prefill?: ILaunchForm
): Promise<IJob | null> {
  const { model, trans } = deps;
  const config = await loadConfig(deps);
  if (!config || !canLaunch(deps, config, path)) {
    return null;
  }
  const backends = offeredBackends(config);
  let form = await startForm(deps, config, backends, prefill);
  let serverError: string | null = null;
  const { schedules } = deps;
  let schedule = schedules
    ? { form: initialScheduleForm(path), model: schedules }
    : undefined;
  for (;;) {
    const result = await showLaunchDialog({
      path,
      isNotebook: isNotebookPath(path),
      isReport: isReportPath(path),
      form,
      backends,
      limits: config.limits,
      model,
      trans,
      title: prefill
        ? trans.__('Re-run %1 as Job', basename(path))
        : trans.__('Run %1 as Job', basename(path)),
      serverError,
      schedule
    });
    if (!result) {
      return null;
    }
    form = result.form;
    if (!(await ensureSaved(deps.docManager, path, trans))) {
      return null;
    }
    void rememberForm(deps.state, form);
    if (result.schedule && schedules) {
      schedule = { form: result.schedule.form, model: schedules };
      const request = scheduleRequest(result.schedule.fields, result.request);
      const created = await submitSchedule({ ...deps, schedules }, request);
      if (!('retryWith' in created) || created.retryWith === null) {
        return null;
      }
      serverError = created.retryWith;
      continue;
    }
    const submitted = await submit(deps, path, result.request);
    if ('job' in submitted) {
      return submitted.job;
    }
    if (submitted.retryWith === null) {
      return null;
    }
    serverError = submitted.retryWith;
  }
}

/** The server's config, or null after telling the user why not. */
async function loadConfig(deps: ILaunchDeps): Promise<IServerConfig | null> {
  const { trans } = deps;
  try {
    return await deps.model.ensureConfig();
  } catch (reason) {
    Notification.error(
      reason instanceof ApiError && reason.status === 404
        ? trans.__('The awsjobs server extension is not running.')
        : trans.__('Cannot reach the jobs server: %1', errorText(reason))
    );
    return null;
  }
}

/** Whether the server runs this file on some backend; says why not. */
function canLaunch(
  deps: ILaunchDeps,
  config: IServerConfig,
  path: string
): boolean {
  const { trans } = deps;
  if (!isSupportedPath(path, config.extensions)) {
    Notification.warning(
      trans.__(
        '%1 cannot run as a job. Supported file types: %2',
        basename(path),
        config.extensions.join(', ')
      )
    );
    return false;
  }
  if (offeredBackends(config).length === 0) {
    Notification.error(trans.__('No job backend is configured on the server.'));
    return false;
  }
  return true;
}

/** The first form: the re-run's values or the remembered/default ones, on an offered backend. */
async function startForm(
  deps: ILaunchDeps,
  config: IServerConfig,
  backends: ReadonlyArray<IBackendInfo>,
  prefill: ILaunchForm | undefined
): Promise<ILaunchForm> {
  const form = prefill
    ? { ...prefill }
    : initialForm(deps.model, config, await loadRememberedForm(deps.state));
  return backends.some(b => b.id === form.backend)
    ? form
    : { ...form, backend: backends[0].id };
}

/** Submit with a toast while the server launches; then the panel shows the job. */
async function submit(
  deps: ILaunchDeps,
  path: string,
  request: ILaunchRequest
): Promise<Submitted> {
  const { trans } = deps;
  const name = basename(path);
  const pending = Notification.emit(
    trans.__('Launching %1…', name),
    'in-progress',
    { autoClose: false }
  );
  try {
    const job = await deps.model.submit(request);
    Notification.dismiss(pending);
    Notification.success(trans.__('Job for %1 submitted.', name), {
      autoClose: 4000
    });
    void deps.commands.execute(CommandIDs.openPanel, { id: job.id });
    return { job };
  } catch (reason) {
    Notification.dismiss(pending);
    Notification.error(
      trans.__('Could not launch %1: %2', name, errorText(reason)),
      { autoClose: 8000 }
    );
    // A refused request (4xx) is shown in the form again; others end the flow.
    const refused =
      reason instanceof ApiError && reason.status >= 400 && reason.status < 500;
    return { retryWith: refused ? reason.message : null };
  }
}
