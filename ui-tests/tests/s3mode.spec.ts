/**
 * Issue 13's "done when", in Chromium: a user with a bucket and no EFS runs a
 * notebook on EC2 from the panel, watches its log live, and finds its outputs
 * beside it. The test starts its own JupyterLab
 * (`jupyter_server_ec2_s3_config.py`: the EC2 backend on the simulated AWS
 * that playwright.config.js starts, `storage = "s3"`, a bucket in the
 * simulator's S3, no EFS id); the simulator's worker downloads the folder,
 * runs the notebook with papermill, streams its log and uploads its outputs
 * through S3 with its `aws` shim.
 */
import { expect, galata, test } from '@jupyterlab/galata';

import {
  getJob,
  IJobBase,
  openLaunchDialog,
  selectedJob,
  stopIfActive
} from './ec2jobs';
import { SpawnedLab } from './spawnedlab';

const S3_PORT = process.env.AWSJOBS_UI_S3_PORT || '8895';

interface IS3Job extends IJobBase {
  storage: string;
}

function cell(source: string, tags: string[] = []) {
  return {
    cell_type: 'code',
    execution_count: null,
    metadata: tags.length ? { tags } : {},
    outputs: [],
    source
  };
}

// Prints a line a second for a while (the log is read while it runs), then
// scales the data file it was given into a CSV beside itself.
const NOTEBOOK = {
  cells: [
    cell('ticks = 15\n', ['parameters']),
    cell(
      'import time\n' +
        'for i in range(1, ticks + 1):\n' +
        '    print(f"tick {i}", flush=True)\n' +
        '    time.sleep(1)\n'
    ),
    cell(
      'rows = [int(x) for x in open("data/numbers.csv").read().split()]\n' +
        'with open("scaled.csv", "w") as f:\n' +
        '    f.writelines(f"{r * 10}\\n" for r in rows)\n' +
        'print("wrote scaled.csv", flush=True)\n'
    )
  ],
  metadata: {
    kernelspec: {
      name: 'python3',
      display_name: 'Python 3',
      language: 'python'
    }
  },
  nbformat: 4,
  nbformat_minor: 5
};

test.describe('a notebook on EC2 with its files through S3', () => {
  const server = new SpawnedLab(
    'jupyter_server_ec2_s3_config.py',
    S3_PORT,
    'awsjobs-galata-s3-'
  );
  test.use({
    baseURL: server.url,
    mockSettings: {
      ...galata.DEFAULT_SETTINGS,
      'awsjobs-lab:plugin': {
        pollIntervalSeconds: 1,
        logPollIntervalSeconds: 0.5
      }
    }
  });
  test.beforeAll(async () => {
    test.setTimeout(180 * 1000);
    await server.start();
  });
  test.afterAll(async () => {
    await server.stop();
  });

  test('runs from the panel, its log followed live, its outputs back beside it', async ({
    page,
    tmpPath
  }) => {
    test.setTimeout(240 * 1000);
    const notebook = `${tmpPath}/analysis.ipynb`;
    await page.contents.uploadContent(
      JSON.stringify(NOTEBOOK),
      'text',
      notebook
    );
    await page.contents.uploadContent(
      '1\n2\n3\n',
      'text',
      `${tmpPath}/data/numbers.csv`
    );
    await page.filebrowser.openDirectory(tmpPath);

    let id: string | null = null;
    try {
      const dialog = await openLaunchDialog(page, notebook);
      await dialog.locator('button.jp-mod-accept').click();
      id = await selectedJob(page);
      const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);

      // The inputs going up (while the instance boots), or already running.
      await expect(
        row
          .locator('.jp-AWSJobs-transfer', { hasText: /^uploading inputs / })
          .or(row.locator('.jp-AWSJobs-phase[data-phase="running"]'))
          .first()
      ).toBeVisible({ timeout: 90000 });
      expect((await getJob<IS3Job>(page.request, id)).storage).toBe('s3');

      // The log, live: lines while the notebook still runs.
      const log = page.locator('.jp-AWSJobs-log');
      await expect(log).toContainText('tick 2', { timeout: 90000 });
      expect((await getJob(page.request, id)).state).toBe('running');
      await expect(row).toHaveAttribute('data-state', 'running');
      await expect(log).not.toContainText('wrote scaled.csv');

      await expect(row).toHaveAttribute('data-state', 'succeeded', {
        timeout: 120000
      });
      await expect(log).toContainText('wrote scaled.csv');

      // Its outputs beside the notebook: the executed copy and the CSV.
      for (const name of [`analysis.${id}.ipynb`, 'scaled.csv']) {
        await expect
          .poll(
            async () => {
              await page.filebrowser.refresh();
              return page.filebrowser.isFileListedInBrowser(name);
            },
            { timeout: 30000 }
          )
          .toBe(true);
      }
      const csv = await page.request.get(
        `/api/contents/${tmpPath}/scaled.csv?content=1&type=file&format=text`
      );
      expect(((await csv.json()) as { content: string }).content).toBe(
        '10\n20\n30\n'
      );
    } finally {
      await stopIfActive(page.request, id);
    }
  });
});
