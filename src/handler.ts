import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The server extension's namespace, joined with `serverSettings.baseUrl`. */
export const API_NAMESPACE = 'awsjobs/api';

/**
 * An error answered by the awsjobs server: `message` is the server's own
 * `message` (meant for the user), `status` the HTTP status (0 for a network
 * failure), `reason` the server's short reason.
 */
export class ApiError extends Error {
  constructor(message: string, status: number, reason = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
  }

  readonly status: number;
  readonly reason: string;
}

/**
 * The text of anything thrown, for people: an `Error`'s message (an
 * `ApiError` carries the server's own `message`), else its string form.
 */
export function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/** Pull the user-facing message out of a JSON (or not) error body. */
export function errorMessage(
  body: unknown,
  status: number,
  statusText: string
): { message: string; reason: string } {
  if (body && typeof body === 'object') {
    const record = body as { message?: unknown; reason?: unknown };
    const message =
      typeof record.message === 'string' && record.message
        ? record.message
        : '';
    const reason = typeof record.reason === 'string' ? record.reason : '';
    if (message) {
      return { message, reason };
    }
    if (reason) {
      return { message: reason, reason };
    }
  }
  if (typeof body === 'string' && body.trim() && !body.trim().startsWith('<')) {
    return { message: body.trim(), reason: statusText };
  }
  return {
    message: `${status} ${statusText || 'Error'}`.trim(),
    reason: statusText
  };
}

/**
 * Call the awsjobs REST API.
 *
 * @param endPoint API path below `/awsjobs/api/` (may carry a query string)
 * @param serverSettings always `app.serviceManager.serverSettings`
 * @param init fetch options
 * @returns the decoded JSON body (`undefined` for 204)
 * @throws ApiError carrying the server's `message`
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<T> {
  const url = URLExt.join(serverSettings.baseUrl, API_NAMESPACE, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, serverSettings);
  } catch (error) {
    throw new ApiError(errorText(error) || 'Network error', 0, 'network');
  }
  const text = await response.text();
  let data: unknown = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const { message, reason } = errorMessage(
      data,
      response.status,
      response.statusText
    );
    throw new ApiError(message, response.status, reason);
  }
  return data as T;
}
