import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './handler';
import type { IInstanceList, ITerminated } from './instances';
import type {
  IInstanceQuery,
  IInstanceTypes,
  IJob,
  IJobPage,
  ILaunchRequest,
  IListQuery,
  ILogChunk,
  IServerConfig
} from './tokens';

/** Build a query string from defined values only (no leading `?` if empty). */
export function queryString(params: {
  [key: string]: string | number | boolean | null | undefined;
}): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') {
      continue;
    }
    parts.push(
      `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
    );
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** Typed client of the awsjobs REST API (`/awsjobs/api/`). */
export class JobsService {
  constructor(serverSettings: ServerConnection.ISettings) {
    this.serverSettings = serverSettings;
  }

  readonly serverSettings: ServerConnection.ISettings;

  /** `GET jobs`: newest first. */
  listJobs(query: IListQuery = {}): Promise<IJobPage> {
    const qs = queryString({
      state: query.state && query.state.length ? query.state.join(',') : null,
      limit: query.limit,
      cursor: query.cursor,
      schedule: query.schedule
    });
    return this._request<IJobPage>(`jobs${qs}`);
  }

  /** `GET jobs/{id}`. */
  getJob(id: string): Promise<IJob> {
    return this._request<IJob>(`jobs/${encodeURIComponent(id)}`);
  }

  /** `POST jobs`: launch a job, answered with the new job (201). */
  submit(request: ILaunchRequest): Promise<IJob> {
    return this._request<IJob>('jobs', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  /** `POST jobs/{id}/stop` (202, idempotent). */
  stopJob(id: string): Promise<IJob> {
    return this._request<IJob>(`jobs/${encodeURIComponent(id)}/stop`, {
      method: 'POST',
      body: '{}'
    });
  }

  /** `DELETE jobs/{id}` (204; 409 while the job is active). */
  async deleteJob(id: string): Promise<void> {
    await this._request<void>(`jobs/${encodeURIComponent(id)}`, {
      method: 'DELETE'
    });
  }

  /** `GET jobs/{id}/log?offset=&limit=`. */
  readLog(id: string, offset: number, limit?: number): Promise<ILogChunk> {
    const qs = queryString({ offset, limit });
    return this._request<ILogChunk>(`jobs/${encodeURIComponent(id)}/log${qs}`);
  }

  /** `GET config`. */
  getConfig(): Promise<IServerConfig> {
    return this._request<IServerConfig>('config');
  }

  /**
   * `GET instance-types`: the price preview of the backend with the
   * `instance_types` capability (400 when none is configured).
   */
  instanceTypes(query: IInstanceQuery): Promise<IInstanceTypes> {
    const qs = queryString({
      memory_gib: query.memory_gib,
      cpus: query.cpus,
      spot: query.spot ? 'true' : 'false',
      instance_type: query.instance_type,
      gpus: query.gpus,
      gpu_memory_gib: query.gpu_memory_gib,
      gpu_model: query.gpu_model
    });
    return this._request<IInstanceTypes>(`instance-types${qs}`);
  }

  /** `GET instances`: this tool's live instances (400 when none is configured). */
  listInstances(): Promise<IInstanceList> {
    return this._request<IInstanceList>('instances');
  }

  /** `POST instances/stop`: terminate instances of this tool (403 if any is not). */
  terminateInstances(ids: ReadonlyArray<string>): Promise<ITerminated> {
    return this._request<ITerminated>('instances/stop', {
      method: 'POST',
      body: JSON.stringify({ instance_ids: ids })
    });
  }

  private _request<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(endPoint, this.serverSettings, init);
  }
}
