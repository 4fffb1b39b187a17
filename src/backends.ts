/**
 * What the server says about its backends (`GET config`), asked by id: the
 * dialog, the panel and the commands decide from these, never from a
 * backend's id, so a backend added on the server needs no front-end change.
 */
import type { BackendCapability, IBackendInfo, IServerConfig } from './tokens';

type Backends = ReadonlyArray<IBackendInfo>;

/** The backends of a config (none while it is not loaded). */
function backendsOf(config: IServerConfig | null): Backends {
  return config?.backends ?? [];
}

/** The configured backends the launch dialog may offer. */
export function offeredBackends(config: IServerConfig): IBackendInfo[] {
  return config.backends.filter(b => b.configured);
}

/** One backend by id, if the server serves it. */
export function findBackend(
  backends: Backends,
  id: string
): IBackendInfo | undefined {
  return backends.find(b => b.id === id);
}

/** Whether a backend declares a capability (false when it is unknown). */
export function backendCan(
  backends: Backends,
  id: string,
  capability: BackendCapability
): boolean {
  return !!findBackend(backends, id)?.capabilities?.[capability];
}

/** As `backendCan`, from a config that may not be loaded yet. */
export function configBackendCan(
  config: IServerConfig | null,
  id: string,
  capability: BackendCapability
): boolean {
  return backendCan(backendsOf(config), id, capability);
}

/** The label of a backend from the server, else its id. */
export function backendLabel(config: IServerConfig | null, id: string): string {
  return findBackend(backendsOf(config), id)?.label || id;
}
