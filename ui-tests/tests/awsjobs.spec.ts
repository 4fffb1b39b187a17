/**
 * What a person does with awsjobs-lab, on the local backend, in Chromium:
 * right-click → Run as job → watch it run and its log → Stop; the dialog's
 * inline validation; a notebook job's output notebook.
 */
import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';
import type { Locator } from '@playwright/test';

import { readyLaunchDialog } from './launchdialog';

const SCRIPT = `import time
print("hello from awsjobs", flush=True)
for i in range(4):
    print(f"line {i}", flush=True)
    time.sleep(1)
print("done", flush=True)
`;

const LONG = `echo "long job started"
sleep 300
echo "never printed"
`;

const NOTEBOOK = JSON.stringify({
  cells: [
    {
      cell_type: 'code',
      id: 'parameters',
      execution_count: null,
      metadata: { tags: ['parameters'] },
      outputs: [],
      source: ['greeting = "hi"']
    },
    {
      cell_type: 'code',
      id: 'greet',
      execution_count: null,
      metadata: {},
      outputs: [],
      source: ['print(greeting + " from a notebook job")']
    }
  ],
  metadata: {
    kernelspec: {
      display_name: 'Python 3',
      language: 'python',
      name: 'python3'
    },
    language_info: { name: 'python' }
  },
  nbformat: 4,
  nbformat_minor: 5
});

// Poll fast so the short job is seen running; keep notifications out of screenshots.
test.use({
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
  tmpPath: string,
  name: string,
  content: string
): Promise<void> {
  await page.contents.uploadContent(content, 'text', `${tmpPath}/${name}`);
  await page.filebrowser.refresh();
}

function fileItem(page: IJupyterLabPageFixture, name: string): Locator {
  return page.locator('.jp-DirListing-content .jp-DirListing-item', {
    has: page.getByText(name, { exact: true })
  });
}

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

/** The details pane of the job launched last (selected by the launch). */
async function launchedJob(page: IJupyterLabPageFixture): Promise<string> {
  const details = page.locator(
    '.jp-AWSJobs-panel .jp-AWSJobs-details[data-job-id]'
  );
  await expect(details).toBeVisible({ timeout: 30000 });
  const id = await details.getAttribute('data-job-id');
  expect(id).toBeTruthy();
  return id as string;
}

async function jobIds(page: IJupyterLabPageFixture): Promise<string[]> {
  const response = await page.request.get('/awsjobs/api/jobs?limit=200');
  expect(response.ok()).toBeTruthy();
  const body = (await response.json()) as {
    jobs: { id: string; path: string }[];
  };
  return body.jobs.map(j => j.path);
}

/**
 * A whole-pixel clip of an element: an element screenshot's size follows the
 * sub-pixel position of the element, which moves with the rows above it.
 */
async function clipOf(
  locator: Locator
): Promise<{ x: number; y: number; width: number; height: number }> {
  await locator.scrollIntoViewIfNeeded();
  const box = await locator.boundingBox();
  expect(box).toBeTruthy();
  const b = box as { x: number; y: number; width: number; height: number };
  return {
    x: Math.round(b.x),
    y: Math.round(b.y),
    width: Math.floor(b.width),
    height: Math.floor(b.height)
  };
}

test.describe('awsjobs-lab', () => {
  test('a script runs from the file browser, its log follows, it succeeds', async ({
    page,
    tmpPath
  }) => {
    await upload(page, tmpPath, 'hello.py', SCRIPT);

    // The entry is offered on supported files only.
    await upload(page, tmpPath, 'notes.txt', 'not runnable\n');
    await fileItem(page, 'notes.txt').click({ button: 'right' });
    await expect(page.locator('.lm-Menu')).toBeVisible();
    await expect(
      page
        .locator('.lm-Menu-itemLabel', { hasText: 'Run as Job…' })
        .filter({ visible: true })
    ).toHaveCount(0);
    await page.keyboard.press('Escape');

    await fileItem(page, 'hello.py').click({ button: 'right' });
    await page
      .locator('.lm-Menu-itemLabel', { hasText: 'Run as Job…' })
      .click();

    const dialog = await readyLaunchDialog(page);
    await expect(dialog.locator('select[name="backend"]')).toHaveValue('local');
    await expect(dialog.locator('.jp-AWSJobs-launch')).toHaveScreenshot(
      'launch-dialog.png',
      {
        mask: [
          dialog.locator('.jp-AWSJobs-launchPath'),
          dialog.locator('input[name="logPath"]')
        ]
      }
    );
    await dialog.locator('button.jp-mod-accept').click();

    const id = await launchedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    await expect(row).toBeVisible();
    await expect(row.locator('.jp-AWSJobs-jobName')).toHaveText('hello.py');
    await expect(row).toHaveAttribute('data-state', 'running', {
      timeout: 30000
    });
    const log = page.locator('.jp-AWSJobs-log');
    await expect(log).toContainText('hello from awsjobs', { timeout: 30000 });
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 60000
    });
    await expect(log).toContainText('line 3');
    await expect(log).toContainText('done');
    await expect(page.locator('.jp-AWSJobs-logStatus')).toHaveAttribute(
      'data-complete',
      'true'
    );
    await expect(
      page.locator('.jp-AWSJobs-details [data-field="exit_code"]')
    ).toHaveText('0');

    await expect(page).toHaveScreenshot('job-row-succeeded.png', {
      clip: await clipOf(row),
      mask: [row.locator('.jp-AWSJobs-elapsed')]
    });

    await page
      .locator('.jp-AWSJobs-details .jp-AWSJobs-history summary')
      .click();
    // One line per field, so the (masked) paths of a retry cannot change the height.
    await page.addStyleTag({
      content:
        '.jp-AWSJobs-fields dd, .jp-AWSJobs-history li { white-space: nowrap; overflow: hidden; }'
    });
    // The summary only: the log's height depends on the panel's.
    const summary = page.locator('.jp-AWSJobs-details .jp-AWSJobs-summary');
    await expect(page).toHaveScreenshot('job-details-succeeded.png', {
      clip: await clipOf(summary),
      mask: [
        page.locator('.jp-AWSJobs-details [data-field="path"]'),
        page.locator('.jp-AWSJobs-details [data-field="elapsed"]'),
        page.locator('.jp-AWSJobs-details [data-field="command"]'),
        page.locator('.jp-AWSJobs-details [data-field="phases"]'), // durations vary by run
        page.locator('.jp-AWSJobs-details [data-field="log_path"]'),
        page.locator('.jp-AWSJobs-details [data-field="id"]'),
        page.locator('.jp-AWSJobs-details .jp-AWSJobs-historyTime'),
        page.locator('.jp-AWSJobs-details .jp-AWSJobs-history li')
      ]
    });
  });

  test('a long job is stopped from the panel and ends stopped', async ({
    page,
    tmpPath
  }) => {
    await upload(page, tmpPath, 'long.sh', LONG);
    await runCommand(page, 'awsjobs:run-file', { path: `${tmpPath}/long.sh` });
    const dialog = await readyLaunchDialog(page);
    await dialog.locator('button.jp-mod-accept').click();

    const id = await launchedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    await expect(row).toHaveAttribute('data-state', 'running', {
      timeout: 30000
    });
    await expect(page.locator('.jp-AWSJobs-log')).toContainText(
      'long job started',
      {
        timeout: 30000
      }
    );

    await page.locator('.jp-AWSJobs-details .jp-AWSJobs-stopButton').click();
    const confirm = page.locator('.jp-Dialog');
    await expect(confirm).toContainText('Stop job?');
    await confirm.locator('button.jp-mod-accept').click();

    // `stopping` at once (or already stopped), then the confirmed final state.
    await expect(row).toHaveAttribute('data-state', /stopping|stopped/, {
      timeout: 5000
    });
    await expect(row).toHaveAttribute('data-state', 'stopped', {
      timeout: 60000
    });
    await expect(
      page.locator('.jp-AWSJobs-details .jp-AWSJobs-stopButton')
    ).toHaveCount(0);

    // Re-run opens the dialog prefilled with the job's settings.
    await page.locator('.jp-AWSJobs-details .jp-AWSJobs-rerun').click();
    const rerun = await readyLaunchDialog(page);
    await expect(rerun.locator('.jp-Dialog-header')).toContainText(
      'Re-run long.sh'
    );
    await expect(rerun.locator('input[name="memoryGib"]')).toHaveValue('4');
    await rerun.locator('button.jp-mod-reject').click();
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);

    // A finished job can be removed (after confirmation).
    await page.locator('.jp-AWSJobs-details .jp-AWSJobs-removeButton').click();
    const remove = page.locator('.jp-Dialog');
    await expect(remove).toContainText('Remove job?');
    await remove.locator('button.jp-mod-accept').click();
    await expect(row).toHaveCount(0);
  });

  test('invalid dialog input shows an error and launches nothing', async ({
    page,
    tmpPath
  }) => {
    await upload(page, tmpPath, 'invalid.py', 'print("should not run")\n');
    await runCommand(page, 'awsjobs:run-file', {
      path: `${tmpPath}/invalid.py`
    });
    const dialog = await readyLaunchDialog(page);

    const memory = dialog.locator('input[name="memoryGib"]');
    await memory.fill('0');
    const error = dialog.locator(
      '.jp-AWSJobs-fieldError[data-field="memoryGib"]'
    );
    await expect(error).toBeVisible();
    await expect(error).toContainText('above 0');
    await expect(dialog.locator('button.jp-mod-accept')).toBeDisabled();

    // Enter submits the form all the same: the dialog comes back with the error.
    await memory.press('Enter');
    // The dialog comes back (a new one, showing every error at once).
    const again = page.locator('.jp-Dialog', {
      has: page.locator('.jp-AWSJobs-launchForm[data-show-all="true"]')
    });
    await expect(again).toHaveCount(1);
    await expect(page.locator('.jp-Dialog')).toHaveCount(1);
    await expect(
      again.locator('.jp-AWSJobs-fieldError[data-field="memoryGib"]')
    ).toBeVisible();

    // A value only the server can refuse: its message comes back in the dialog.
    await again.locator('input[name="memoryGib"]').fill('1');
    await again.locator('input[name="logPath"]').fill('no-such-folder/run.log');
    await expect(again.locator('button.jp-mod-accept')).toBeEnabled();
    await again.locator('button.jp-mod-accept').click();
    const serverError = page.locator('.jp-Dialog .jp-AWSJobs-serverError');
    await expect(serverError).toContainText('log_path');
    await expect(serverError).toContainText('does not exist');
    await expect(page.locator('.jp-Dialog input[name="logPath"]')).toHaveValue(
      'no-such-folder/run.log'
    );

    await page.locator('.jp-Dialog button.jp-mod-reject').click();
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);
    const paths = await jobIds(page);
    expect(paths.filter(p => p.endsWith('invalid.py'))).toHaveLength(0);
  });

  test('a notebook job produces its output notebook', async ({
    page,
    tmpPath
  }) => {
    await upload(page, tmpPath, 'analysis.ipynb', NOTEBOOK);
    await fileItem(page, 'analysis.ipynb').click({ button: 'right' });
    await page
      .locator('.lm-Menu-itemLabel', { hasText: 'Run as Job…' })
      .click();
    const dialog = await readyLaunchDialog(page);
    await dialog
      .locator('textarea[name="parameters"]')
      .fill('{"greeting": "hello"}');
    await dialog.locator('button.jp-mod-accept').click();

    const id = await launchedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 90000
    });
    const output = page.locator(
      '.jp-AWSJobs-details [data-field="output_path"]'
    );
    await expect(output).toBeVisible();
    const outputPath = (await output.textContent()) ?? '';
    const outputName = outputPath.split('/').pop() as string;
    expect(outputName).toMatch(/\.ipynb$/);

    await page.filebrowser.refresh();
    await expect(fileItem(page, outputName)).toBeVisible();

    // Open it from the panel: the parameter reached the notebook.
    await page.locator('.jp-AWSJobs-details .jp-AWSJobs-openOutput').click();
    await expect(page.locator('.jp-NotebookPanel')).toContainText(
      'hello from a notebook job',
      { timeout: 30000 }
    );
  });
});

test.describe('from an open notebook', () => {
  test('toolbar button and tab menu; unsaved changes are saved first', async ({
    page
  }) => {
    await page.notebook.createNew('open.ipynb');
    await page.notebook.setCell(0, 'code', 'print("saved before the run")');

    // The tab's context menu offers the command for a notebook.
    await page
      .locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: 'open.ipynb' })
      .click({ button: 'right' });
    await expect(
      page
        .locator('.lm-Menu-itemLabel', { hasText: 'Run Current File as Job…' })
        .filter({ visible: true })
    ).toHaveCount(1);
    await page.keyboard.press('Escape');

    // The notebook's toolbar button: dialog, then the unsaved-changes question.
    await page
      .locator('.jp-NotebookPanel-toolbar [data-command="awsjobs:run-current"]')
      .click();
    const dialog = await readyLaunchDialog(page);
    await expect(dialog.locator('.jp-Dialog-header')).toContainText(
      'Run open.ipynb as Job'
    );
    await dialog.locator('button.jp-mod-accept').click();
    const save = page.locator('.jp-Dialog', { hasText: 'Unsaved changes' });
    await expect(save).toBeVisible();
    await save.getByRole('button', { name: 'Save and run' }).click();

    const id = await launchedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 90000
    });
    await expect(page.locator('.jp-AWSJobs-log')).toContainText(
      'saved before the run'
    );
  });
});

test.describe('across a page reload', () => {
  // The real state database (workspace), so the selection is remembered.
  test.use({ mockState: false });

  test('the panel, the selected job and its log come back', async ({
    page,
    tmpPath
  }) => {
    await upload(
      page,
      tmpPath,
      'again.py',
      'print("still here", flush=True)\n'
    );
    await runCommand(page, 'awsjobs:run-file', { path: `${tmpPath}/again.py` });
    const dialog = await readyLaunchDialog(page);
    await dialog.locator('button.jp-mod-accept').click();
    const id = await launchedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 60000
    });
    await expect(page.locator('.jp-AWSJobs-log')).toContainText('still here');

    // Let the workspace be saved, then reload.
    await page.waitForTimeout(2000);
    await page.reload();
    const details = page.locator(
      `.jp-AWSJobs-panel .jp-AWSJobs-details[data-job-id="${id}"]`
    );
    await expect(details).toBeVisible({ timeout: 30000 });
    await expect(page.locator('.jp-AWSJobs-log')).toContainText('still here');
  });
});
