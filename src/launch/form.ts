/**
 * The launch form's starting values and the remembered ones: what the user
 * chose last time (not the per-file values) is kept in the state database.
 */
import type { IStateDB } from '@jupyterlab/statedb';

import { offeredBackends } from '../backends';
import { IJobsModel, IServerConfig, StateKeys } from '../tokens';
import type { ILaunchForm } from '../validation';

/** The remembered launch values (not the per-file ones). */
export type RememberedForm = Pick<
  ILaunchForm,
  | 'backend'
  | 'memoryGib'
  | 'cpus'
  | 'spot'
  | 'maxLifetimeMinutes'
  | 'env'
  | 'instanceType'
  | 'onInterruption'
  | 'maxAttempts'
  | 'gpus'
  | 'gpuMemoryGib'
  | 'gpuModel'
>;

/**
 * The dialog's starting values: the remembered ones, else the settings,
 * else the server's defaults.
 */
export function initialForm(
  model: IJobsModel,
  config: IServerConfig,
  remembered: Partial<RememberedForm> | null
): ILaunchForm {
  const s = model.settings;
  const ids = offeredBackends(config).map(b => b.id);
  const pick = (id: string | undefined) => (id && ids.includes(id) ? id : '');
  const backend =
    pick(remembered?.backend) ||
    pick(s.defaultBackend) ||
    pick(config.default_backend) ||
    ids[0] ||
    '';
  const d = config.defaults;
  return {
    backend,
    memoryGib:
      remembered?.memoryGib ?? String(s.memoryGib ?? d?.memory_gib ?? 4),
    cpus: remembered?.cpus ?? String(s.cpus ?? d?.cpus ?? 2),
    spot: remembered?.spot ?? s.spot ?? d?.spot ?? true,
    maxLifetimeMinutes:
      remembered?.maxLifetimeMinutes ??
      String(s.maxLifetimeMinutes ?? d?.max_lifetime_minutes ?? 240),
    logPath: '',
    parameters: '',
    args: '',
    env: remembered?.env ?? '',
    instanceType: remembered?.instanceType ?? '',
    onInterruption: remembered?.onInterruption ?? 'retry',
    maxAttempts: remembered?.maxAttempts ?? '3',
    gpus: remembered?.gpus ?? '0',
    gpuMemoryGib: remembered?.gpuMemoryGib ?? '',
    gpuModel: remembered?.gpuModel ?? ''
  };
}

/** The values remembered from the last launch, if any. */
export async function loadRememberedForm(
  state: IStateDB | null
): Promise<Partial<RememberedForm> | null> {
  if (!state) {
    return null;
  }
  try {
    const value = await state.fetch(StateKeys.launchForm);
    return value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Partial<RememberedForm>)
      : null;
  } catch {
    return null;
  }
}

/** Remember a launch's values for the next dialog (best effort). */
export async function rememberForm(
  state: IStateDB | null,
  form: ILaunchForm
): Promise<void> {
  if (!state) {
    return;
  }
  const value: RememberedForm = {
    backend: form.backend,
    memoryGib: form.memoryGib,
    cpus: form.cpus,
    spot: form.spot,
    maxLifetimeMinutes: form.maxLifetimeMinutes,
    env: form.env,
    instanceType: form.instanceType,
    onInterruption: form.onInterruption,
    maxAttempts: form.maxAttempts,
    gpus: form.gpus,
    gpuMemoryGib: form.gpuMemoryGib,
    gpuModel: form.gpuModel
  };
  await state.save(StateKeys.launchForm, value).catch(() => undefined);
}
