/**
 * What the EC2 browser tests share: a job read from the server, the launch
 * dialog opened on the EC2 backend, the job a launch selected, and a job left
 * active by a failed test stopped.
 */
import { expect, IJupyterLabPageFixture } from '@jupyterlab/galata';
import type { APIRequestContext, Locator } from '@playwright/test';

import { readyLaunchDialog } from './launchdialog';

/** What every job JSON has; a test reads more with its own type. */
export interface IJobBase {
  id: string;
  state: string;
}

/** `GET /awsjobs/api/jobs/{id}`, typed as the test reads it. */
export async function getJob<T extends IJobBase = IJobBase>(
  request: APIRequestContext,
  id: string
): Promise<T> {
  const response = await request.get(`/awsjobs/api/jobs/${id}`);
  expect(response.ok()).toBeTruthy();
  return (await response.json()) as T;
}

/** The launch dialog of `path`, on the EC2 backend. */
export async function openLaunchDialog(
  page: IJupyterLabPageFixture,
  path: string
): Promise<Locator> {
  await page.evaluate(path => {
    // Not awaited in the page: the command waits for the dialog.
    void window.jupyterapp.commands.execute('awsjobs:run-file', { path });
  }, path);
  const dialog = await readyLaunchDialog(page);
  await dialog.locator('select[name="backend"]').selectOption('ec2');
  return dialog;
}

/** The job selected in the panel (a launch selects its job); its id. */
export async function selectedJob(
  page: IJupyterLabPageFixture
): Promise<string> {
  const details = page.locator(
    '.jp-AWSJobs-panel .jp-AWSJobs-details[data-job-id]'
  );
  await expect(details).toBeVisible({ timeout: 30000 });
  return (await details.getAttribute('data-job-id')) as string;
}

const ACTIVE = ['pending', 'launching', 'running', 'stopping'];

/**
 * Stop job `id` if it is still active, and wait until it reads stopped: a
 * failed test leaves no instance on the shared simulator, and the next spec
 * may launch (the EC2 servers' cap is one instance).
 */
export async function stopIfActive(
  request: APIRequestContext,
  id: string | null
): Promise<void> {
  if (id === null || !ACTIVE.includes((await getJob(request, id)).state)) {
    return;
  }
  await request.post(`/awsjobs/api/jobs/${id}/stop`);
  await expect
    .poll(async () => (await getJob(request, id)).state, { timeout: 60000 })
    .toBe('stopped');
}
