/**
 * Spot recovery, GPU requests and the spending cap in Chromium, on the second
 * JupyterLab whose EC2 backend launches on the simulated AWS
 * (playwright.config.js starts both; jupyter_server_ec2_config.py sets
 * c.AWSJobs.max_active_instances = 1). The simulator's worker really runs
 * the jobs; its control API interrupts a spot instance.
 *
 * Each test leaves no active job behind: the cap of one instance holds for
 * the next.
 */
import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';
import type { APIRequestContext, Locator } from '@playwright/test';

import { getJob, openLaunchDialog, selectedJob } from './ec2jobs';
import { EC2_URL, SIM_URL } from './simulated';

// Its first attempt runs until AWS reclaims the instance; the next finishes.
const TRAIN = `import os, sys, time
attempt = os.environ["AWSJOBS_ATTEMPT"]
print(f"attempt {attempt} starts", flush=True)
if attempt != "1":
    print("finished", flush=True)
    sys.exit(0)
time.sleep(300)
`;

const LONG = `echo "long job started"
sleep 300
`;

interface IAttemptJSON {
  number: number;
  instance_id: string | null;
  outcome: string | null;
  spot: boolean;
}

interface IJobJSON {
  id: string;
  state: string;
  instance_id?: string | null;
  instance_type: string | null;
  gpus: number;
  gpu_model: string | null;
  attempts: IAttemptJSON[];
}

test.use({
  baseURL: EC2_URL,
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'awsjobs-lab:plugin': {
      pollIntervalSeconds: 1,
      logPollIntervalSeconds: 0.5
    }
  }
});

async function upload(
  page: IJupyterLabPageFixture,
  path: string,
  content: string
): Promise<void> {
  await page.contents.uploadContent(content, 'text', path);
  await page.filebrowser.refresh();
}

async function setSpot(dialog: Locator, spot: boolean): Promise<void> {
  const box = dialog.locator('input[name="spot"]');
  if ((await box.isChecked()) !== spot) {
    await box.click();
  }
}

async function activeJobs(request: APIRequestContext): Promise<IJobJSON[]> {
  const response = await request.get(
    '/awsjobs/api/jobs?state=pending,launching,running,stopping&limit=200'
  );
  expect(response.ok()).toBeTruthy();
  return ((await response.json()) as { jobs: IJobJSON[] }).jobs;
}

async function simulatorInstances(request: APIRequestContext): Promise<number> {
  const response = await request.get(`${SIM_URL}/awssim/state`);
  expect(response.ok()).toBeTruthy();
  const state = (await response.json()) as {
    record: { instances: unknown[] };
  };
  return state.record.instances.length;
}

test.describe('spot recovery, GPUs and the spending cap on the simulated AWS', () => {
  test('an interrupted spot job goes on to its second attempt and succeeds', async ({
    page,
    tmpPath
  }) => {
    await upload(page, `${tmpPath}/train.py`, TRAIN);
    const dialog = await openLaunchDialog(page, `${tmpPath}/train.py`);
    await setSpot(dialog, true);
    await expect(dialog.locator('select[name="onInterruption"]')).toHaveValue(
      'retry'
    );
    await expect(dialog.locator('input[name="maxAttempts"]')).toHaveValue('3');
    await dialog.locator('button.jp-mod-accept').click();

    const id = await selectedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    const log = page.locator('.jp-AWSJobs-log');
    await expect(log).toContainText('attempt 1 starts', { timeout: 60000 });
    const first = (await getJob<IJobJSON>(page.request, id)).attempts[0];
    expect(first.spot).toBe(true);
    expect(first.instance_id).toBeTruthy();

    const interrupted = await page.request.post(
      `${SIM_URL}/awssim/interrupt/${first.instance_id}`
    );
    expect(interrupted.ok()).toBeTruthy();

    const details = page.locator('.jp-AWSJobs-details');
    await expect(details.locator('[data-field="attempt"]')).toHaveText(
      'attempt 2 of 3 (spot interrupted, now spot)',
      { timeout: 60000 }
    );
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 60000
    });
    // One log: the first attempt's output, the marker, the second's.
    await expect(log).toContainText(
      '--- awsjobs: attempt 2 of 3 (spot interrupted, now spot) ---'
    );
    await expect(log).toContainText('attempt 2 starts');
    await expect(log).toContainText('finished');
    // The history of attempts: each instance and how it ended.
    const attempts = details.locator('.jp-AWSJobs-attempts');
    await attempts.locator('summary').click();
    const items = attempts.locator('li');
    await expect(items).toHaveCount(2);
    await expect(items.nth(0)).toHaveAttribute('data-outcome', 'interrupted');
    await expect(items.nth(0)).toContainText(first.instance_id as string);
    await expect(items.nth(1)).toHaveAttribute('data-outcome', 'succeeded');

    const done = await getJob<IJobJSON>(page.request, id);
    expect(done.attempts.map(a => a.outcome)).toEqual([
      'interrupted',
      'succeeded'
    ]);
    expect(done.attempts[1].instance_id).not.toBe(first.instance_id);
  });

  test('the launch dialog takes GPU fields; its preview names a GPU type', async ({
    page,
    tmpPath
  }) => {
    await upload(page, `${tmpPath}/gpu.py`, 'print("on a GPU")\n');
    const dialog = await openLaunchDialog(page, `${tmpPath}/gpu.py`);
    await setSpot(dialog, true);
    await dialog.locator('input[name="gpus"]').fill('1');
    await dialog.locator('input[name="gpuModel"]').fill('T4');

    const preview = dialog.locator('.jp-AWSJobs-preview');
    await expect(preview.locator('[data-field="instance_type"]')).toHaveText(
      /^g4dn\./,
      { timeout: 30000 }
    );
    await expect(preview.locator('[data-field="gpus"]')).toContainText(
      '1 × T4 GPU, 16 GiB each'
    );
    await expect(preview.locator('[data-field="offer"]')).toHaveText(
      /^Tries g4dn\.\S+ or \d+ similar types?, 2 zones, from \$[\d.]+\/h spot$/
    );
    await dialog.locator('button.jp-mod-accept').click();

    // The GPU fields went with the request: the job runs on a T4 type.
    const id = await selectedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 60000
    });
    const job = await getJob<IJobJSON>(page.request, id);
    expect([job.gpus, job.gpu_model]).toEqual([1, 'T4']);
    expect(job.instance_type).toMatch(/^g4dn\./);
  });

  test('the spend line leads the panel; a launch over the instance cap is refused with nothing launched', async ({
    page,
    tmpPath
  }) => {
    await upload(page, `${tmpPath}/long.sh`, LONG);
    await page.evaluate(() => {
      void window.jupyterapp.commands.execute('awsjobs:open-panel');
    });
    const panel = page.locator('.jp-AWSJobs-panel');
    const spend = panel.locator('.jp-AWSJobs-spend');
    await expect(spend).toContainText('Spend:');
    await expect(spend).toContainText('(0 of 1 instance)');
    // At the top: above the job list.
    const spendTop = (await spend.boundingBox())?.y ?? Infinity;
    const listTop = (
      await panel.locator('.jp-AWSJobs-job').first().boundingBox()
    )?.y;
    expect(spendTop).toBeLessThan(listTop ?? Infinity);

    // One instance running: the cap is reached.
    const created = await page.request.post('/awsjobs/api/jobs', {
      data: { path: `${tmpPath}/long.sh`, backend: 'ec2' }
    });
    expect(created.status()).toBe(201);
    const long = (await created.json()) as IJobJSON;
    try {
      await expect(spend).toContainText('(1 of 1 instance)', {
        timeout: 30000
      });
      await expect
        .poll(async () => (await getJob(page.request, long.id)).state, {
          timeout: 60000
        })
        .toBe('running');
      const instances = await simulatorInstances(page.request);
      const active = (await activeJobs(page.request)).map(j => j.id);

      const dialog = await openLaunchDialog(page, `${tmpPath}/long.sh`);
      await setSpot(dialog, false);
      await dialog.locator('button.jp-mod-accept').click();
      // Refused: the dialog comes back with the server's reason.
      await expect(page.locator('.jp-AWSJobs-serverError')).toContainText(
        'Not launched: the cap c.AWSJobs.max_active_instances is 1; 1 instance is active now, and this job would add 1.',
        { timeout: 30000 }
      );
      await expect(
        page.locator('.Toastify__toast', {
          hasText: 'Could not launch long.sh'
        })
      ).toBeVisible();
      await page.locator('.jp-Dialog button.jp-mod-reject').click();
      await expect(page.locator('.jp-Dialog')).toHaveCount(0);

      expect((await activeJobs(page.request)).map(j => j.id)).toEqual(active);
      expect(await simulatorInstances(page.request)).toBe(instances);
    } finally {
      await page.request.post(`/awsjobs/api/jobs/${long.id}/stop`);
      await expect
        .poll(async () => (await getJob(page.request, long.id)).state, {
          timeout: 60000
        })
        .toBe('stopped');
    }
    await expect(spend).toContainText('(0 of 1 instance)', { timeout: 30000 });
  });
});
