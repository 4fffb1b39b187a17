/**
 * Schedules in Chromium. On the default local backend: a schedule created in
 * the launch dialog ("On a schedule", the cron's reading beside it), seen in
 * the Schedules view, run now (its job carries the schedule's name and
 * succeeds), disabled, and deleted. On EC2 (the simulated AWS that
 * playwright.config.js starts): a schedule created in the browser fires while
 * the Jupyter server is stopped (the test starts and stops its own server),
 * and after a restart its run shows as succeeded with its log.
 */
import * as fs from 'fs';
import * as path from 'path';

import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';

import { SIM_URL } from './simulated';
import { readyLaunchDialog } from './launchdialog';
import { SpawnedLab, until } from './spawnedlab';

const SCRIPT = `print("hello from a schedule", flush=True)
`;

test.use({
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'awsjobs-lab:plugin': { pollIntervalSeconds: 1 }
  }
});

async function runCommand(
  page: IJupyterLabPageFixture,
  id: string,
  args: Record<string, unknown> = {}
): Promise<void> {
  // Not awaited in the page: the command may wait for a dialog.
  await page.evaluate(
    ({ id, args }) => {
      void window.jupyterapp.commands.execute(id, args as never);
    },
    { id, args }
  );
}

/** A name no earlier run of the suite used (the job database outlives a test). */
function uniqueName(): string {
  return `galata-${Date.now().toString(36)}`;
}

test('a schedule is created in the dialog, run now, disabled and deleted', async ({
  page,
  tmpPath
}) => {
  await page.contents.uploadContent(SCRIPT, 'text', `${tmpPath}/report.py`);
  const name = uniqueName();

  await runCommand(page, 'awsjobs:run-file', { path: `${tmpPath}/report.py` });
  const dialog = await readyLaunchDialog(page);
  await dialog.locator('input[name="launchMode"][value="schedule"]').check();
  await dialog.locator('input[name="schedule-name"]').fill(name);
  await dialog.locator('input[name="schedule-cron"]').fill('0 6 * * 1-5');
  // The server's reading and the next three runs, beside the cron.
  await expect(dialog.locator('.jp-AWSJobs-cronDescription')).toContainText(
    '06:00'
  );
  await expect(dialog.locator('.jp-AWSJobs-nextRuns li')).toHaveCount(3);
  await expect(dialog.locator('.jp-AWSJobs-scheduleNote')).toContainText(
    'runs only while this Jupyter server runs'
  );
  // The server's grace for a missed run (GET config; its default here).
  await expect(dialog.locator('.jp-AWSJobs-scheduleNote')).toContainText(
    'at most 60 minutes old'
  );
  // A cron the server refuses is said inline and blocks the button.
  await dialog.locator('input[name="schedule-cron"]').fill('* * * * *');
  await expect(
    dialog.locator('.jp-AWSJobs-fieldError[data-field="cron"]')
  ).toBeVisible();
  await expect(dialog.locator('button.jp-mod-accept')).toBeDisabled();
  await dialog.locator('input[name="schedule-cron"]').fill('0 6 * * 1-5');
  const accept = dialog.locator('button.jp-mod-accept');
  await expect(accept).toHaveText('Create schedule');
  await expect(accept).toBeEnabled();
  await accept.click();

  // The Schedules view opens on it.
  const row = page.locator(`.jp-AWSJobs-scheduleRow[data-schedule="${name}"]`);
  await expect(row).toBeVisible({ timeout: 30000 });
  await expect(row.locator('.jp-AWSJobs-scheduleReading')).toContainText(
    '06:00'
  );
  await expect(row.locator('.jp-AWSJobs-nextRun')).toContainText('Next');

  // Run now: a job with the schedule's name appears and succeeds.
  await row.locator('.jp-AWSJobs-runSchedule').click();
  await expect(row.locator('.jp-AWSJobs-lastRun')).toHaveAttribute(
    'data-state',
    'succeeded',
    { timeout: 60000 }
  );
  await row.locator('.jp-AWSJobs-scheduleJobs').click();
  const job = page.locator('.jp-AWSJobs-job').filter({
    has: page.locator('.jp-AWSJobs-scheduleBadge', { hasText: name })
  });
  await expect(job).toHaveCount(1);
  await expect(job).toHaveAttribute('data-state', 'succeeded');
  await expect(page.locator('.jp-AWSJobs-scheduleFilter')).toContainText(name);
  await page.locator('.jp-AWSJobs-clearScheduleFilter').click();

  // Disable it: no next run, and the server says so.
  await page.locator('.jp-AWSJobs-tab', { hasText: 'Schedules' }).click();
  await row.locator('.jp-AWSJobs-scheduleToggle input').click();
  await expect(row).toHaveAttribute('data-enabled', 'false');
  await expect(row.locator('.jp-AWSJobs-nextRun')).toHaveText('No next run');
  const got = await page.request.get(`/awsjobs/api/schedules/${name}`);
  expect(((await got.json()) as { enabled: boolean }).enabled).toBe(false);

  // Delete it, through the confirmation.
  await row.locator('.jp-AWSJobs-deleteSchedule').click();
  await expect(page.locator('.jp-Dialog')).toContainText(name);
  await page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-warn').click();
  await expect(row).toHaveCount(0);
  const gone = await page.request.get(`/awsjobs/api/schedules/${name}`);
  expect(gone.status()).toBe(404);
});

const SCHEDULE_PORT = process.env.AWSJOBS_UI_SCHEDULE_PORT || '8896';
const SCHEDULE_URL = `http://127.0.0.1:${SCHEDULE_PORT}`;
/** The owner's EventBridge Scheduler group (`awsjobs_lab/aws/scheduler.py`). */
function groupOf(owner: string): string {
  return `awsjobs-${owner.replace(/[^0-9A-Za-z_.-]/g, '_')}`.slice(0, 64);
}

const NIGHTLY = `print("hello from a schedule fired while the server was stopped", flush=True)
`;

/** The simulator's instances and their states. */
async function simulatedInstances(): Promise<
  { instance_id: string; state: string }[]
> {
  const response = await fetch(`${SIM_URL}/awssim/state`);
  return (
    (await response.json()) as {
      instances: { instance_id: string; state: string }[];
    }
  ).instances;
}

test.describe('an EC2 schedule', () => {
  // Its root folder and job database outlive it (the test restarts it).
  const server = new SpawnedLab(
    'jupyter_server_ec2_schedules_config.py',
    SCHEDULE_PORT,
    'awsjobs-galata-sched-'
  );
  test.use({ baseURL: SCHEDULE_URL });
  test.beforeAll(async () => {
    test.setTimeout(180 * 1000);
    await server.start();
  });
  test.afterAll(async () => {
    await server.stop();
  });

  test('fires with the Jupyter server stopped; after a restart its run has succeeded, with its log', async ({
    page
  }) => {
    test.setTimeout(360 * 1000);
    fs.writeFileSync(path.join(server.root, 'nightly.py'), NIGHTLY);
    const name = uniqueName();

    await runCommand(page, 'awsjobs:run-file', { path: 'nightly.py' });
    const dialog = await readyLaunchDialog(page);
    await dialog.locator('select[name="backend"]').selectOption('ec2');
    await dialog.locator('input[name="launchMode"][value="schedule"]').check();
    await dialog.locator('input[name="schedule-name"]').fill(name);
    await dialog.locator('input[name="schedule-cron"]').fill('0 6 * * *');
    await expect(dialog.locator('.jp-AWSJobs-cronDescription')).toContainText(
      '06:00'
    );
    await expect(dialog.locator('.jp-AWSJobs-scheduleNote')).toContainText(
      'lives in AWS'
    );
    await dialog.locator('button.jp-mod-accept').click();
    const row = page.locator(
      `.jp-AWSJobs-scheduleRow[data-schedule="${name}"]`
    );
    await expect(row).toBeVisible({ timeout: 30000 });

    const made = await page.request.get(`/awsjobs/api/schedules/${name}`);
    const { owner, remote } = (await made.json()) as {
      owner: string;
      remote: boolean;
    };
    expect(remote).toBe(true);
    // c.EC2Backend.owner, as its instances are tagged, not the OS user.
    expect(owner).toBe('galata');

    // The server stops (the page leaves first: Galata proxies its polls and
    // fails on a refused one); AWS fires the schedule: the worker runs the job alone.
    await page.evaluate(() => window.location.assign('about:blank'));
    await page.waitForURL('about:blank');
    await server.stop();
    const before = new Set(
      (await simulatedInstances()).map(i => i.instance_id)
    );
    const fired = await fetch(
      `${SIM_URL}/awssim/fire-schedule/${groupOf(owner)}/${name}`,
      { method: 'POST', body: '{}' }
    );
    expect(fired.ok, await fired.text()).toBeTruthy();
    await until(
      async () => {
        const runs = (await simulatedInstances()).filter(
          i => !before.has(i.instance_id)
        );
        return runs.length > 0 && runs.every(i => i.state === 'terminated');
      },
      180,
      'the scheduled run to end and its instance to terminate'
    );

    // The server is up again: it imports the run, succeeded, with its log.
    await server.start();
    await page.goto();
    await runCommand(page, 'awsjobs:show-schedules');
    await expect(row.locator('.jp-AWSJobs-lastRun')).toHaveAttribute(
      'data-state',
      'succeeded',
      { timeout: 90000 }
    );
    await row.locator('.jp-AWSJobs-lastRunJob').click();
    const details = page.locator('.jp-AWSJobs-details[data-job-id]');
    await expect(details).toHaveAttribute('data-state', 'succeeded');
    await expect(details.locator('[data-field="schedule"]')).toHaveText(name);
    await expect(page.locator('.jp-AWSJobs-log')).toContainText(
      'hello from a schedule fired while the server was stopped',
      { timeout: 30000 }
    );

    // Deleting it leaves nothing of it in AWS.
    await runCommand(page, 'awsjobs:delete-schedule', { name, confirm: false });
    await until(
      async () => {
        const response = await page.request.get(
          `/awsjobs/api/schedules/${name}`
        );
        return response.status() === 404;
      },
      30,
      'the schedule to be deleted'
    );
  });
});
