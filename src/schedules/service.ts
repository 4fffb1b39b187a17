import type { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../handler';
import { queryString } from '../service';
import type { IJob } from '../tokens';
import type {
  ISchedule,
  IScheduleCreate,
  IScheduleList,
  ISchedulePatch,
  ISchedulePreview
} from './tokens';

/** Typed client of the schedule endpoints of the awsjobs REST API. */
export class SchedulesService {
  constructor(serverSettings: ServerConnection.ISettings) {
    this.serverSettings = serverSettings;
  }

  readonly serverSettings: ServerConnection.ISettings;

  /** `GET schedules`. */
  list(): Promise<IScheduleList> {
    return this._request<IScheduleList>('schedules');
  }

  /** `GET schedules/{name}`: with its next runs and its last runs. */
  get(name: string): Promise<ISchedule> {
    return this._request<ISchedule>(this._path(name));
  }

  /** `POST schedules` (201). */
  create(request: IScheduleCreate): Promise<ISchedule> {
    return this._request<ISchedule>('schedules', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  /** `PATCH schedules/{name}`. */
  patch(name: string, fields: ISchedulePatch): Promise<ISchedule> {
    return this._request<ISchedule>(this._path(name), {
      method: 'PATCH',
      body: JSON.stringify(fields)
    });
  }

  /** `DELETE schedules/{name}` (its running jobs go on). */
  async remove(name: string): Promise<void> {
    await this._request<void>(this._path(name), { method: 'DELETE' });
  }

  /** `POST schedules/{name}/run`: one run now, answered with its job. */
  run(name: string): Promise<IJob> {
    return this._request<IJob>(`${this._path(name)}/run`, {
      method: 'POST',
      body: '{}'
    });
  }

  /** `GET schedule-preview?cron=&timezone=`: the words and the next runs. */
  preview(cron: string, timezone: string): Promise<ISchedulePreview> {
    return this._request<ISchedulePreview>(
      `schedule-preview${queryString({ cron, timezone })}`
    );
  }

  private _path(name: string): string {
    return `schedules/${encodeURIComponent(name)}`;
  }

  private _request<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(endPoint, this.serverSettings, init);
  }
}
