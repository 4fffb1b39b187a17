/**
 * R users in Chromium, on the default local backend (R with rmarkdown and
 * pandoc on the machine): a parameterized R Markdown report is run from the
 * file browser with a report parameter set in the dialog, and "Open output"
 * shows the rendered HTML, with that value, in JupyterLab's HTML viewer; an
 * R script receives the dialog's arguments verbatim (a space, a quote and a
 * `$` in one of them), and Re-run keeps them.
 */
import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';
import type { Locator } from '@playwright/test';

import { readyLaunchDialog } from './launchdialog';

// Declares n = 3; the job sets it to 7. The inline value and a chunk's output
// both show it in the rendered HTML.
const REPORT = `---
title: "Parameterized report"
output: html_document
params: {n: 3}
---

The value of n is \`r params$n\`.

\`\`\`{r}
cat("n squared:", params$n^2, "\\n")
\`\`\`
`;

const ARGS_SCRIPT = `a <- commandArgs(trailingOnly = TRUE)
cat(sprintf("argument count: %d\\n", length(a)))
for (i in seq_along(a)) cat(sprintf("arg %d: [%s]\\n", i, a[[i]]))
`;

// One argument per line in the dialog, each taken as typed.
const ARGUMENTS = ['two words', "--label=it's $HOME"];

// Poll fast so the panel follows the job's states closely.
test.use({
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'awsjobs-lab:plugin': {
      pollIntervalSeconds: 1,
      logPollIntervalSeconds: 0.5
    }
  }
});

/**
 * Write a file into the test's folder, then right-click it in the file
 * browser → "Run as Job…": the launch dialog.
 */
async function runFromFileBrowser(
  page: IJupyterLabPageFixture,
  folder: string,
  name: string,
  content: string
): Promise<Locator> {
  await page.contents.uploadContent(content, 'text', `${folder}/${name}`);
  await page.filebrowser.refresh();
  await page
    .locator('.jp-DirListing-content .jp-DirListing-item', {
      has: page.getByText(name, { exact: true })
    })
    .click({ button: 'right' });
  await page.locator('.lm-Menu-itemLabel', { hasText: 'Run as Job…' }).click();
  const dialog = await readyLaunchDialog(page);
  await expect(dialog.locator('select[name="backend"]')).toHaveValue('local');
  return dialog;
}

/** Wait for the job launched last (the launch selects it) to succeed. */
async function launchedJobSucceeds(
  page: IJupyterLabPageFixture,
  name: string
): Promise<void> {
  const row = page.locator(
    '.jp-AWSJobs-panel .jp-AWSJobs-job[aria-selected="true"]'
  );
  await expect(row.locator('.jp-AWSJobs-jobName')).toHaveText(name, {
    timeout: 30000
  });
  // An R start and a pandoc render take a while on a busy machine.
  await expect(row).toHaveAttribute('data-state', 'succeeded', {
    timeout: 90000
  });
}

test.describe('R and R Markdown jobs', () => {
  test('a parameterized report renders with the dialog’s value and opens in the HTML viewer', async ({
    page,
    tmpPath
  }) => {
    const dialog = await runFromFileBrowser(
      page,
      tmpPath,
      'report.Rmd',
      REPORT
    );

    // A report takes parameters, not arguments.
    await expect(dialog).toContainText('Report parameters');
    await expect(dialog.locator('textarea[name="args"]')).toHaveCount(0);
    const parameters = dialog.locator('textarea[name="parameters"]');

    // A name the header does not declare comes back from the server, naming n.
    await parameters.fill('{"m": 7}');
    await dialog.locator('button.jp-mod-accept').click();
    const serverError = page.locator('.jp-Dialog .jp-AWSJobs-serverError');
    await expect(serverError).toContainText("'m' is not declared");
    await expect(serverError).toContainText('declared: n');

    const again = await readyLaunchDialog(page);
    await again.locator('textarea[name="parameters"]').fill('{"n": 7}');
    await again.locator('button.jp-mod-accept').click();

    await launchedJobSucceeds(page, 'report.Rmd');
    // The rendered file, next to the source.
    const output = page.locator(
      '.jp-AWSJobs-details [data-field="output_path"]'
    );
    await expect(output).toHaveText(/report\.[^/]+\.html$/);
    const outputName = ((await output.textContent()) ?? '').split('/').pop();

    await page.locator('.jp-AWSJobs-details .jp-AWSJobs-openOutput').click();
    const tab = page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', {
      hasText: outputName as string
    });
    await expect(tab).toBeVisible({ timeout: 30000 });
    const viewer = page.locator('.jp-HTMLViewer').filter({ visible: true });
    await expect(viewer).toHaveCount(1);
    // Trusted only as JupyterLab trusts any HTML file: no scripts until asked.
    const frame = viewer.locator('iframe');
    await expect(frame).not.toHaveAttribute('sandbox', /allow-scripts/);
    const body = viewer.frameLocator('iframe').locator('body');
    await expect(body).toContainText('Parameterized report', {
      timeout: 30000
    });
    await expect(body).toContainText('The value of n is 7.');
    await expect(body).toContainText('n squared: 49');
    await expect(body).not.toContainText('The value of n is 3');
  });

  test('an R script gets the dialog’s arguments verbatim; Re-run keeps them', async ({
    page,
    tmpPath
  }) => {
    const dialog = await runFromFileBrowser(
      page,
      tmpPath,
      'args.R',
      ARGS_SCRIPT
    );

    // A script takes arguments, not parameters.
    await expect(dialog.locator('textarea[name="parameters"]')).toHaveCount(0);
    await dialog.locator('textarea[name="args"]').fill(ARGUMENTS.join('\n'));
    await dialog.locator('button.jp-mod-accept').click();

    await launchedJobSucceeds(page, 'args.R');
    const log = page.locator('.jp-AWSJobs-log');
    await expect(log).toContainText('argument count: 2');
    await expect(log).toContainText('arg 1: [two words]');
    await expect(log).toContainText("arg 2: [--label=it's $HOME]");

    await page.locator('.jp-AWSJobs-details .jp-AWSJobs-rerun').click();
    const rerun = await readyLaunchDialog(page);
    await expect(rerun.locator('textarea[name="args"]')).toHaveValue(
      ARGUMENTS.join('\n')
    );
    await rerun.locator('button.jp-mod-reject').click();
    await expect(page.locator('.jp-Dialog')).toHaveCount(0);
  });
});
