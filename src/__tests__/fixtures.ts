/**
 * Shared test helpers: a job factory and a request table that stands in for
 * the server behind `ServerConnection.makeRequest`.
 */
import { ServerConnection } from '@jupyterlab/services';

import type {
  IBackendCapabilities,
  IBackendInfo,
  IInstanceChoice,
  IJob,
  IServerConfig
} from '../tokens';
import type { ILaunchForm } from '../validation';

/** A launch form on EC2 with spot on, as the dialog would hold it. */
export function makeForm(overrides: Partial<ILaunchForm> = {}): ILaunchForm {
  return {
    backend: 'ec2',
    memoryGib: '4',
    cpus: '2',
    spot: true,
    maxLifetimeMinutes: '60',
    logPath: '',
    parameters: '',
    args: '',
    env: '',
    instanceType: '',
    onInterruption: 'retry',
    maxAttempts: '3',
    gpus: '0',
    gpuMemoryGib: '',
    gpuModel: '',
    ...overrides
  };
}

/** An instance type the server would choose (`GET instance-types` choice). */
export const CHOICE: IInstanceChoice = {
  instance_type: 'm6i.large',
  vcpus: 2,
  memory_gib: 8,
  hourly_price: 0.04,
  spot: true
};

export function makeJob(overrides: Partial<IJob> = {}): IJob {
  return {
    id: '0123456789abcdef',
    path: 'work/train.py',
    backend: 'local',
    state: 'running',
    created_at: 1000,
    updated_at: 1000,
    memory_gib: 4,
    cpus: 2,
    spot: false,
    max_lifetime_minutes: 60,
    log_path: 'work/train.0123456789abcdef.log',
    env: {},
    parameters: {},
    instance_type: null,
    requested_instance_type: null,
    hourly_price: null,
    output_path: null,
    command: ['python', 'train.py'],
    exit_code: null,
    error: null,
    started_at: 1000,
    finished_at: null,
    stop_requested: false,
    handle: {},
    history: [{ state: 'pending', at: 1000, reason: null }],
    on_interruption: 'retry',
    max_attempts: 3,
    attempts: [],
    gpus: 0,
    gpu_memory_gib: 0,
    gpu_model: null,
    instance_id: null,
    elapsed_seconds: 0,
    cost_so_far: null,
    ...overrides
  };
}

const NONE: IBackendCapabilities = {
  spot: false,
  instance_types: false,
  instances: false,
  hourly_price: false
};

/** A backend as `GET config` serves it (no capabilities unless given). */
export function makeBackend(
  id: string,
  overrides: Partial<Omit<IBackendInfo, 'capabilities'>> & {
    capabilities?: Partial<IBackendCapabilities>;
  } = {}
): IBackendInfo {
  return {
    id,
    label: id,
    configured: true,
    ...overrides,
    capabilities: { ...NONE, ...overrides.capabilities }
  };
}

/** The two backends the server ships, as it describes them. */
export const LOCAL = makeBackend('local', { label: 'This machine' });
export const EC2 = makeBackend('ec2', {
  label: 'EC2',
  capabilities: {
    spot: true,
    instance_types: true,
    instances: true,
    hourly_price: true,
    gpus: true
  }
});

/** A `GET config` answer like the server's (EC2 not configured by default). */
export function makeConfig(
  overrides: Partial<IServerConfig> = {}
): IServerConfig {
  return {
    backends: [LOCAL, { ...EC2, configured: false }],
    default_backend: 'local',
    defaults: {
      memory_gib: 4,
      cpus: 1,
      spot: false,
      max_lifetime_minutes: 240,
      max_allowed_lifetime_minutes: 10080
    },
    limits: { memory_gib: 24576, cpus: 448, max_lifetime_minutes: 10080 },
    aws_configured: false,
    extensions: ['.ipynb', '.py', '.R', '.Rmd', '.qmd', '.sh'],
    ...overrides
  };
}

export interface IRecordedRequest {
  method: string;
  url: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export interface IReply {
  status: number;
  body?: unknown;
  /** A raw (non-JSON) body. */
  text?: string;
  statusText?: string;
}

export type Route = (request: IRecordedRequest) => IReply | Promise<IReply>;

export const BASE_URL = 'http://localhost:8888/base/';

export function settings(): ServerConnection.ISettings {
  return ServerConnection.makeSettings({ baseUrl: BASE_URL });
}

/**
 * Route `METHOD path` (path below /awsjobs/api/, without query) to a reply.
 * Returns the recorded requests; unknown routes answer 404.
 */
export function mockServer(table: { [route: string]: IReply | Route }): {
  requests: IRecordedRequest[];
  restore: () => void;
} {
  const requests: IRecordedRequest[] = [];
  const spy = jest
    .spyOn(ServerConnection, 'makeRequest')
    .mockImplementation(async (url: string, init: RequestInit) => {
      const parsed = new URL(url);
      const prefix = '/base/awsjobs/api/';
      const path = parsed.pathname.startsWith(prefix)
        ? parsed.pathname.slice(prefix.length)
        : parsed.pathname;
      const method = (init.method ?? 'GET').toUpperCase();
      const request: IRecordedRequest = {
        method,
        url,
        path,
        query: parsed.searchParams,
        body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined
      };
      requests.push(request);
      const route = table[`${method} ${path}`];
      let reply: IReply;
      if (route === undefined) {
        reply = {
          status: 404,
          body: { message: 'Not found', reason: 'Not Found' }
        };
      } else if (typeof route === 'function') {
        reply = await route(request);
      } else {
        reply = route;
      }
      const text =
        reply.text ??
        (reply.body === undefined ? '' : JSON.stringify(reply.body));
      return {
        ok: reply.status >= 200 && reply.status < 300,
        status: reply.status,
        statusText: reply.statusText ?? '',
        text: async () => text
      } as unknown as Response;
    });
  return { requests, restore: () => spy.mockRestore() };
}
