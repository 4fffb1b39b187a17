/**
 * Attempts of a spot job (issue 12): the panel's "attempt 2 of 3 (spot
 * interrupted, now on-demand)", the attempts list, the summed cost, and the
 * launch form's `on_interruption` / `max_attempts`.
 */
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { attemptNote, costSoFar } from '../format';
import type { IAttempt, IJob, IJobsModel } from '../tokens';
import { formFromJob, ILaunchForm, validateLaunch } from '../validation';
import { LaunchDialogBody } from '../widgets/LaunchDialog';
import {
  CHOICE,
  EC2,
  LOCAL,
  makeConfig,
  makeForm,
  makeJob,
  mockServer
} from './fixtures';
import { usePanel } from './panel';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function attempt(overrides: Partial<IAttempt>): IAttempt {
  return {
    number: 1,
    spot: true,
    instance_id: 'i-0aaa',
    instance_type: 'c7i.large',
    availability_zone: 'us-east-1a',
    hourly_price: 0.036,
    started_at: 1000,
    ended_at: null,
    outcome: null,
    cost: null,
    ...overrides
  };
}

/** On its third attempt, on on-demand, after two interruptions. */
function relaunched(overrides: Partial<IJob> = {}): IJob {
  return makeJob({
    id: 'bbbbbbbbbbbbbbbb',
    backend: 'ec2',
    spot: true,
    instance_type: 'c7i.large',
    attempts: [
      attempt({ ended_at: 1100, outcome: 'interrupted', cost: 0.001 }),
      attempt({
        number: 2,
        instance_id: 'i-0bbb',
        started_at: 1200,
        ended_at: 1300,
        outcome: 'interrupted',
        cost: 0.002
      }),
      attempt({
        number: 3,
        spot: false,
        instance_id: 'i-0ccc',
        hourly_price: 0.36,
        started_at: 1400
      })
    ],
    ...overrides
  });
}

describe('attempt notes and cost', () => {
  it('says which attempt a relaunched job is on, and on which market', () => {
    expect(attemptNote(relaunched(), trans)).toBe(
      'attempt 3 of 3 (spot interrupted, now on-demand)'
    );
    expect(attemptNote(makeJob({ attempts: [attempt({})] }), trans)).toBe(null);
    expect(attemptNote(makeJob(), trans)).toBe(null);
  });

  it('sums the cost of every attempt', () => {
    const job = relaunched();
    // 0.001 + 0.002, and 100 s of the current one at $0.36/h.
    expect(costSoFar(job, 1500)).toBeCloseTo(0.003 + 0.01, 6);
  });
});

describe('the launch form', () => {
  const form = (overrides: Partial<ILaunchForm> = {}): ILaunchForm =>
    makeForm({ onInterruption: 'on_demand', maxAttempts: '5', ...overrides });
  const context = {
    path: 'train.py',
    isNotebook: false,
    backends: [LOCAL, EC2],
    limits: { memory_gib: 0, cpus: 0, max_lifetime_minutes: 0 }
  };

  it('sends what an interruption does with spot on', () => {
    const { request } = validateLaunch(form(), context, trans);
    expect(request?.on_interruption).toBe('on_demand');
    expect(request?.max_attempts).toBe(5);
  });

  it('leaves it out without spot, or where spot means nothing', () => {
    const off = validateLaunch(form({ spot: false }), context, trans).request;
    expect(off && 'on_interruption' in off).toBe(false);
    const local = validateLaunch(form({ backend: 'local' }), context, trans);
    expect(local.request && 'max_attempts' in local.request).toBe(false);
  });

  it('refuses attempts outside 1 to 10', () => {
    for (const value of ['0', '11', '2.5', '']) {
      const { errors, request } = validateLaunch(
        form({ maxAttempts: value }),
        context,
        trans
      );
      expect(errors.maxAttempts).toBe('A whole number from 1 to 10');
      expect(request).toBeNull();
    }
  });

  it('shows the fields in the dialog with spot on, on a spot backend', async () => {
    const model = {
      instanceTypes: async () => ({ choice: CHOICE, candidates: [] })
    } as unknown as IJobsModel;
    const shown = async (f: ILaunchForm): Promise<boolean> => {
      const body = new LaunchDialogBody({ form: f, context, model, trans });
      Widget.attach(body, document.body);
      body.update();
      await sleep(50);
      const select = body.node.querySelector('select[name="onInterruption"]');
      const found =
        select !== null &&
        body.node.querySelector('input[name="maxAttempts"]') !== null;
      if (found) {
        expect((select as HTMLSelectElement).value).toBe(f.onInterruption);
      }
      body.dispose();
      return found;
    };
    expect(await shown(form())).toBe(true);
    expect(await shown(form({ spot: false }))).toBe(false);
    expect(await shown(form({ backend: 'local' }))).toBe(false);
  });

  it('keeps them for a re-run', () => {
    const again = formFromJob(
      makeJob({ spot: true, on_interruption: 'fail', max_attempts: 1 })
    );
    expect([again.onInterruption, again.maxAttempts]).toEqual(['fail', '1']);
  });
});

describe('the Jobs panel', () => {
  const t = usePanel();

  it('shows the attempt and the attempts of a relaunched job', async () => {
    const job = relaunched();
    t.server = mockServer({
      'GET config': { status: 200, body: makeConfig() },
      'GET jobs': { status: 200, body: { jobs: [job], next_cursor: null } },
      [`GET jobs/${job.id}/log`]: {
        status: 200,
        body: {
          content: '',
          offset: 0,
          next_offset: 0,
          size: 0,
          eof: true,
          complete: false
        }
      }
    });
    const { model, panel } = await t.open();
    const row = panel.node.querySelector('.jp-AWSJobs-attempt');
    expect(row?.textContent).toBe('3/3');
    expect(row?.getAttribute('title')).toBe(
      'attempt 3 of 3 (spot interrupted, now on-demand)'
    );
    model.select(job.id);
    await sleep(200);
    const details = panel.node.querySelector('.jp-AWSJobs-details');
    expect(details?.querySelector('[data-field="attempt"]')?.textContent).toBe(
      'attempt 3 of 3 (spot interrupted, now on-demand)'
    );
    const items = details?.querySelectorAll('.jp-AWSJobs-attempts li') ?? [];
    expect(
      Array.from(items).map(li => li.getAttribute('data-outcome'))
    ).toEqual(['interrupted', 'interrupted', 'current']);
    expect(items[2].textContent).toContain('on-demand');
    expect(items[0].textContent).toContain('i-0aaa');
  });
});
