/**
 * Schedules on the default local backend, in Chromium: a schedule created in
 * the launch dialog ("On a schedule", the cron's reading beside it), seen in
 * the Schedules view, run now (its job carries the schedule's name and
 * succeeds), disabled, and deleted.
 */
import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';

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
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.locator('.jp-AWSJobs-launch')).toBeVisible();
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
