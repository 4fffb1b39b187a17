/**
 * The Jobs panel's Instances view, in Chromium: the message of a server
 * without the EC2 backend, and on a second server whose EC2 backend talks to
 * the simulated AWS (playwright.config.js starts both): an orphan of this
 * owner shown and terminated from the UI, a stranger's instance never shown.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';

import { EC2_URL, SIM_URL } from './simulated';
// c.EC2Backend.owner in jupyter_server_ec2_config.py.
const OWNER = 'galata';

test.use({
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'awsjobs-lab:plugin': { pollIntervalSeconds: 1 }
  }
});

/** A direct RunInstances on the simulator with these tags; its id. */
function launchOnSimulator(tags: Record<string, string>): string {
  const script = path.resolve(__dirname, '..', 'awssim_instance.py');
  return execFileSync('python', [script, SIM_URL, JSON.stringify(tags)], {
    encoding: 'utf-8'
  }).trim();
}

/** A job id no server knows: its instance is an orphan. */
function unknownJobId(): string {
  return Array.from({ length: 16 }, () =>
    Math.floor(Math.random() * 16).toString(16)
  ).join('');
}

async function showInstances(page: IJupyterLabPageFixture): Promise<void> {
  await page.evaluate(() => {
    void window.jupyterapp.commands.execute('awsjobs:show-instances');
  });
  await expect(page.locator('.jp-AWSJobs-instances')).toBeVisible();
}

test('the Instances view says plainly that EC2 is not enabled', async ({
  page
}) => {
  await showInstances(page);
  await expect(page.locator('.jp-AWSJobs-instancesError')).toContainText(
    'The EC2 backend is not enabled on this server'
  );
  await expect(page.locator('.jp-AWSJobs-instance')).toHaveCount(0);
});

test.describe('with the EC2 backend on the simulated AWS', () => {
  test.use({ baseURL: EC2_URL });

  test('an orphan is flagged and terminated from the UI; a stranger never shows', async ({
    page
  }) => {
    const orphan = launchOnSimulator({
      'awsjobs:managed': 'true',
      'awsjobs:owner': OWNER,
      'awsjobs:job-id': unknownJobId()
    });
    const stranger = launchOnSimulator({
      'awsjobs:managed': 'true',
      'awsjobs:owner': 'someone-else',
      'awsjobs:job-id': unknownJobId()
    });
    const untagged = launchOnSimulator({ Name: 'not ours' });

    await showInstances(page);
    const row = page.locator(
      `.jp-AWSJobs-instance[data-instance-id="${orphan}"]`
    );
    await expect(row).toBeVisible({ timeout: 30000 });
    await expect(row.locator('.jp-AWSJobs-orphan')).toHaveText('orphan');
    // The status bar counts it; a click there opens the view again.
    const status = page.locator('.jp-AWSJobs-status');
    await expect(status).toContainText(/EC2: \d+ running/);
    await page.locator('.jp-AWSJobs-tab', { hasText: 'Jobs' }).click();
    await status.click();
    await expect(row).toBeVisible();
    // Orphans come first.
    await expect(
      page.locator('.jp-AWSJobs-instance').first().locator('.jp-AWSJobs-orphan')
    ).toBeVisible();
    for (const other of [stranger, untagged]) {
      await expect(
        page.locator(`.jp-AWSJobs-instance[data-instance-id="${other}"]`)
      ).toHaveCount(0);
    }

    await row.locator('.jp-AWSJobs-terminate').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText(orphan);
    await expect(dialog).toContainText('Terminate this instance');
    await dialog.locator('.jp-Dialog-button.jp-mod-warn').click();

    await expect(row).toHaveCount(0, { timeout: 30000 });
    // Refreshed again: the stranger's instance is still not offered.
    await page.locator('.jp-AWSJobs-refreshInstances').click();
    await expect(
      page.locator(`.jp-AWSJobs-instance[data-instance-id="${stranger}"]`)
    ).toHaveCount(0);
    const listed = await page.request.get('/awsjobs/api/instances');
    const ids = (
      (await listed.json()) as { instances: { instance_id: string }[] }
    ).instances.map(i => i.instance_id);
    expect(ids).not.toContain(orphan);
    expect(ids).not.toContain(stranger);
  });
});
