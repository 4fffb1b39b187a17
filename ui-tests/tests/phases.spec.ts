/**
 * Launch phases (issue 15) in Chromium, on the second JupyterLab whose EC2
 * backend launches on the simulated AWS (playwright.config.js starts both).
 * The simulator's clock is slowed through its control API so each phase of a
 * short script job lasts a few seconds: the panel shows them in order under
 * the state, with their elapsed time ticking, and the finished job's details
 * say how long each took. The simulator's configuration is restored after.
 */
import { expect, galata, test } from '@jupyterlab/galata';
import type { APIRequestContext, Locator } from '@playwright/test';

import { getJob, openLaunchDialog, selectedJob, stopIfActive } from './ec2jobs';
import { EC2_URL, SIM_URL } from './simulated';

// Its `running` phase lasts a few seconds too.
const SCRIPT = `echo "phases job started"
sleep 4
echo "phases job done"
`;

// AWS's share, slowed so each phase is seen: the instance boots in 9 s (long
// enough to see the elapsed time tick on a busy machine), its agent registers
// 2 s later, and the boot script's EFS mount (started at boot) takes 9 s, so
// the command handed over waits a few seconds for it.
const SLOW_CLOCK = {
  boot_seconds: 9,
  agent_register_seconds: 2,
  mount_seconds: 9
};
// CreateFleet answers after 3 s (its answer is lost once; the app's repeat
// with the same token gets the same fleet): `requesting` is seen too.
const SLOW_FLEET = [
  {
    service: 'ec2',
    action: 'CreateFleet',
    error: 'LostAnswer',
    delay_seconds: 3,
    count: 1
  }
];

// The order of a job's phases on EC2 (awsjobs_lab/phases.py).
const PHASES = ['requesting', 'booting', 'preparing', 'running', 'finishing'];
// Seen live in the panel (`finishing` lasts about one monitor cycle).
const LIVE_PHASES = PHASES.slice(0, 4);

interface ITransitionJSON {
  state: string;
  phase?: string | null;
}

interface IJobJSON {
  id: string;
  state: string;
  phase?: string | null;
  phase_since?: number | null;
  history: ITransitionJSON[];
}

interface ISimConfig {
  clock: Record<string, number>;
  faults: Record<string, unknown>[];
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

async function simulatorConfig(
  request: APIRequestContext,
  changes?: Partial<ISimConfig>
): Promise<ISimConfig> {
  const response = changes
    ? await request.post(`${SIM_URL}/awssim/config`, { data: changes })
    : await request.get(`${SIM_URL}/awssim/config`);
  expect(response.ok()).toBeTruthy();
  return (await response.json()) as ISimConfig;
}

/** Seconds shown in `phase`'s line ("booting · 0:03" → 3), or -1 in another. */
async function secondsIn(line: Locator, phase: string): Promise<number> {
  const text = (await line.textContent()) ?? '';
  const found = new RegExp(`^${phase} · (\\d+):(\\d\\d)$`).exec(text);
  return found ? Number(found[1]) * 60 + Number(found[2]) : -1;
}

/** "booting 0:07" → 7. */
function durationOf(text: string): number {
  const found = /(\d+):(\d\d)$/.exec(text.trim());
  return found ? Number(found[1]) * 60 + Number(found[2]) : -1;
}

test('a script job on EC2 shows its phases as they happen, then how long each took', async ({
  page,
  tmpPath
}) => {
  const path = `${tmpPath}/phases.sh`;
  await page.contents.uploadContent(SCRIPT, 'text', path);
  await page.filebrowser.refresh();

  const saved = await simulatorConfig(page.request);
  let id: string | null = null;
  try {
    await simulatorConfig(page.request, {
      clock: SLOW_CLOCK,
      faults: SLOW_FLEET
    });
    const dialog = await openLaunchDialog(page, path);
    await dialog.locator('button.jp-mod-accept').click();
    id = await selectedJob(page);
    const row = page.locator(`.jp-AWSJobs-job[data-job-id="${id}"]`);
    const line = row.locator('.jp-AWSJobs-phase');

    for (const phase of LIVE_PHASES) {
      await expect(line).toHaveAttribute('data-phase', phase, {
        timeout: 60000
      });
      await expect(line).toHaveText(new RegExp(`^${phase} · \\d+:\\d\\d$`));
      if (phase === 'booting') {
        // The instance is not handed the job yet: still launching.
        await expect(row).toHaveAttribute('data-state', 'launching');
        // The details' header shows the same phase.
        await expect(
          page.locator('.jp-AWSJobs-detailsHeader .jp-AWSJobs-phase')
        ).toHaveAttribute('data-phase', phase);
        // The elapsed time ticks with the panel's clock.
        const first = await secondsIn(line, phase);
        expect(first).toBeGreaterThanOrEqual(0);
        await expect
          .poll(() => secondsIn(line, phase), { timeout: 10000 })
          .toBeGreaterThan(first);
      }
    }
    await expect(row).toHaveAttribute('data-state', 'succeeded', {
      timeout: 60000
    });
    await expect(line).toHaveCount(0);
    await expect(page.locator('.jp-AWSJobs-log')).toContainText(
      'phases job done'
    );

    // How long each phase took, in order; AWS's slowed share is in them.
    const durations = page.locator(
      '.jp-AWSJobs-details [data-field="phases"] .jp-AWSJobs-phaseDuration'
    );
    await expect(durations).toHaveCount(PHASES.length);
    const shown = new Map<string, number>();
    for (let i = 0; i < PHASES.length; i++) {
      const item = durations.nth(i);
      await expect(item).toHaveAttribute('data-phase', PHASES[i]);
      await expect(item).toHaveText(
        new RegExp(`^( · )?${PHASES[i]} \\d+:\\d\\d$`)
      );
      shown.set(PHASES[i], durationOf((await item.textContent()) ?? ''));
    }
    expect(shown.get('requesting')).toBeGreaterThanOrEqual(2);
    expect(shown.get('booting')).toBeGreaterThanOrEqual(3);
    expect(shown.get('preparing')).toBeGreaterThanOrEqual(2);
    expect(shown.get('running')).toBeGreaterThanOrEqual(3);

    const done = await getJob<IJobJSON>(page.request, id);
    expect([done.phase ?? null, done.phase_since ?? null]).toEqual([
      null,
      null
    ]);
    expect(done.history.filter(t => t.phase).map(t => t.phase)).toEqual(PHASES);
    // The history names each phase entry where it happened, among the moves.
    const history = page.locator('.jp-AWSJobs-details .jp-AWSJobs-history');
    await history.locator('summary').click();
    const names = history.locator('li strong');
    await expect(names).toHaveCount(done.history.length);
    for (const [i, entry] of done.history.entries()) {
      if (entry.phase) {
        await expect(names.nth(i)).toHaveText(entry.phase);
      }
    }
  } finally {
    const restored = await simulatorConfig(page.request, {
      clock: saved.clock,
      faults: saved.faults
    });
    expect([restored.clock, restored.faults]).toEqual([
      saved.clock,
      saved.faults
    ]);
    await stopIfActive(page.request, id);
  }
});
