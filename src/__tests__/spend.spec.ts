import { nullTranslator } from '@jupyterlab/translation';

import { spendFigures, spendText } from '../spend';
import type { ISpendFigures } from '../tokens';
import { EC2, LOCAL, makeConfig, mockServer } from './fixtures';
import { usePanel } from './panel';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function figures(overrides: Partial<ISpendFigures> = {}): ISpendFigures {
  return {
    active_instances: 1,
    hourly_spend: 0.6,
    spend_today: 1.5,
    max_active_instances: null,
    max_hourly_spend: null,
    ...overrides
  };
}

/** A config whose EC2 backend is configured, with these figures. */
function pricedConfig(budget: ISpendFigures) {
  return makeConfig({ backends: [LOCAL, EC2], aws_configured: true, budget });
}

describe('the spend line', () => {
  it('says spend per hour now, the instances and today', () => {
    expect(spendText(figures(), trans)).toBe(
      'Spend: $0.6000/h now (1 instance) · $1.50 today'
    );
    expect(
      spendText(figures({ active_instances: 2, spend_today: 0 }), trans)
    ).toBe('Spend: $0.6000/h now (2 instances) · $0.0000 today');
  });

  it('says the caps when they are set', () => {
    const capped = figures({ max_active_instances: 3, max_hourly_spend: 2 });
    expect(spendText(capped, trans)).toBe(
      'Spend: $0.6000/h of $2.0000/h now (1 of 3 instances) · $1.50 today'
    );
    expect(spendText(figures({ max_active_instances: 1 }), trans)).toContain(
      '(1 of 1 instance)'
    );
  });

  it('is shown only when a configured backend prices its jobs', () => {
    expect(spendFigures(null)).toBeNull();
    expect(spendFigures(makeConfig())).toBeNull(); // EC2 not configured
    expect(spendFigures(makeConfig({ budget: figures() }))).toBeNull();
    const withoutBudget = makeConfig({ backends: [LOCAL, EC2] });
    expect(spendFigures(withoutBudget)).toBeNull(); // an older server
    expect(spendFigures(pricedConfig(figures()))).toEqual(figures());
  });
});

describe('the Jobs panel spend line', () => {
  const t = usePanel();

  const spendLine = () =>
    t.panel?.node.querySelector('.jp-AWSJobs-spend')?.textContent ?? null;

  it('shows the figures at the top and follows them on each poll', async () => {
    let current = figures({
      active_instances: 0,
      hourly_spend: 0,
      spend_today: 0
    });
    t.server = mockServer({
      'GET config': () => ({ status: 200, body: pricedConfig(current) }),
      'GET jobs': { status: 200, body: { jobs: [], next_cursor: null } }
    });
    const p = (await t.open()).panel;
    const view = p.node.querySelector('.jp-AWSJobs-view');
    expect(view?.firstElementChild?.className).toBe('jp-AWSJobs-spend');
    expect(spendLine()).toBe(
      'Spend: $0.0000/h now (0 instances) · $0.0000 today'
    );
    current = figures(); // a job started
    await t.model?.refresh(); // the poll's refresh
    await sleep(300);
    expect(spendLine()).toBe('Spend: $0.6000/h now (1 instance) · $1.50 today');
  });

  it('is absent when no configured backend prices its jobs', async () => {
    const server = (t.server = mockServer({
      'GET config': { status: 200, body: makeConfig({ budget: figures() }) },
      'GET jobs': { status: 200, body: { jobs: [], next_cursor: null } }
    }));
    await t.open();
    await t.model?.refresh();
    expect(spendLine()).toBeNull();
    // Nothing to follow: the config is read once.
    expect(server.requests.filter(r => r.path === 'config')).toHaveLength(1);
  });
});
