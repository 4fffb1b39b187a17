/**
 * Launch phases (issue 15): the phase and its elapsed time under the state
 * ("booting · 0:41"), each phase's duration in a finished job's details, and
 * the history's phase entries.
 */
import { nullTranslator } from '@jupyterlab/translation';

import { phaseDurations, phaseText } from '../phases';
import type { IJob, ITransition } from '../tokens';
import { makeConfig, makeJob, mockServer } from './fixtures';
import { usePanel } from './panel';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

const HISTORY: ITransition[] = [
  { state: 'pending', at: 1000, reason: 'created' },
  { state: 'launching', at: 1001, reason: 'launching on EC2' },
  { state: 'launching', at: 1001, reason: null, phase: 'requesting' },
  { state: 'launching', at: 1003, reason: null, phase: 'booting' },
  { state: 'launching', at: 1034, reason: null, phase: 'preparing' },
  { state: 'running', at: 1035, reason: 'started' },
  { state: 'running', at: 1039, reason: null, phase: 'running' },
  { state: 'running', at: 1069, reason: null, phase: 'finishing' },
  { state: 'succeeded', at: 1070, reason: 'finished' }
];

function booting(): IJob {
  return makeJob({
    id: 'b0071ae5b0071ae5',
    backend: 'ec2',
    state: 'launching',
    phase: 'booting',
    phase_since: Date.now() / 1000 - 41,
    history: HISTORY.slice(0, 4)
  });
}

function finished(): IJob {
  return makeJob({
    id: 'f1e1d5f1e1d5f1e1',
    backend: 'ec2',
    state: 'succeeded',
    phase: null,
    phase_since: null,
    finished_at: 1070,
    history: HISTORY
  });
}

describe('phases', () => {
  it('reads "booting · 0:41" with the time in the phase', () => {
    const job = booting();
    expect(phaseText(job, (job.phase_since ?? 0) + 41, trans)).toBe(
      'booting · 0:41'
    );
    expect(phaseText(finished(), 2000, trans)).toBe('');
  });

  it('sums each phase until the next entry or a move out of running', () => {
    expect(phaseDurations(HISTORY, 2000)).toEqual([
      ['requesting', 2],
      ['booting', 31],
      ['preparing', 5],
      ['running', 30],
      ['finishing', 1]
    ]);
    // An active job's current phase counts until now.
    expect(phaseDurations(HISTORY.slice(0, 4), 1010)).toEqual([
      ['requesting', 2],
      ['booting', 7]
    ]);
    // A relaunch (running → launching) ends the phase.
    const relaunched: ITransition[] = [
      { state: 'running', at: 0, reason: null, phase: 'running' },
      { state: 'launching', at: 10, reason: 'attempt 2 of 3' },
      { state: 'launching', at: 12, reason: null, phase: 'requesting' }
    ];
    expect(phaseDurations(relaunched, 13)).toEqual([
      ['running', 10],
      ['requesting', 1]
    ]);
  });
});

describe('the Jobs panel', () => {
  const t = usePanel();

  it('shows the phase under the state, and the durations once finished', async () => {
    const active = booting();
    const done = finished();
    t.server = mockServer({
      'GET config': { status: 200, body: makeConfig() },
      'GET jobs': {
        status: 200,
        body: { jobs: [active, done], next_cursor: null }
      },
      [`GET jobs/${done.id}/log`]: {
        status: 200,
        body: {
          content: '',
          offset: 0,
          next_offset: 0,
          size: 0,
          eof: true,
          complete: true
        }
      }
    });
    const { model, panel } = await t.open();
    const row = panel.node.querySelector(`[data-job-id="${active.id}"]`);
    const phase = row?.querySelector('.jp-AWSJobs-phase');
    expect(phase?.getAttribute('data-phase')).toBe('booting');
    expect(phase?.textContent).toMatch(/^booting · 0:4\d$/);
    const doneRow = panel.node.querySelector(`[data-job-id="${done.id}"]`);
    expect(doneRow?.querySelector('.jp-AWSJobs-phase')).toBeNull();

    model.select(done.id);
    await sleep(200);
    const details = panel.node.querySelector('.jp-AWSJobs-details');
    expect(details?.querySelector('[data-field="phases"]')?.textContent).toBe(
      'requesting 0:02 · booting 0:31 · preparing 0:05 · running 0:30 · finishing 0:01'
    );
    const entries = details?.querySelectorAll('.jp-AWSJobs-history li') ?? [];
    expect(
      Array.from(entries).map(li => li.querySelector('strong')?.textContent)
    ).toContain('booting');
  });
});
