import { makeConfig, makeJob, mockServer } from './fixtures';
import { usePanel } from './panel';

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

// As the server serves it: the EC2 backend is described even when not configured.
const CONFIG = makeConfig();

describe('JobsPanel', () => {
  const t = usePanel();

  it('lists jobs with their state, backend, instance and cost', async () => {
    t.server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 200,
        body: {
          jobs: [
            makeJob({
              id: 'aaaaaaaaaaaaaaaa',
              path: 'x/train.py',
              backend: 'ec2',
              spot: true,
              instance_type: 'm6i.large',
              hourly_price: 3.6,
              started_at: 0,
              finished_at: 100,
              state: 'succeeded'
            }),
            makeJob({
              id: 'bbbbbbbbbbbbbbbb',
              path: 'y/report.R',
              state: 'failed',
              created_at: 1
            })
          ],
          next_cursor: null
        }
      }
    });
    const p = (await t.open()).panel;
    const rows = p.node.querySelectorAll('.jp-AWSJobs-job[data-job-id]');
    expect(rows).toHaveLength(2);
    const first = rows[0] as HTMLElement;
    expect(first.dataset.state).toBe('succeeded');
    expect(first.textContent).toContain('train.py');
    expect(first.textContent).toContain('m6i.large');
    expect(first.textContent).toContain('spot');
    expect(first.querySelector('.jp-AWSJobs-cost')?.textContent).toBe(
      '$0.1000'
    );
    expect(first.querySelector('.jp-AWSJobs-elapsed')?.textContent).toBe(
      '1:40'
    );
    expect((rows[1] as HTMLElement).dataset.state).toBe('failed');
    expect(rows[1].querySelector('.jp-AWSJobs-tone-error')).not.toBeNull();
  });

  it('shows the details and log of the selected job', async () => {
    t.server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 200,
        body: {
          jobs: [makeJob({ id: 'aaaaaaaaaaaaaaaa', exit_code: null })],
          next_cursor: null
        }
      },
      'GET jobs/aaaaaaaaaaaaaaaa/log': {
        status: 200,
        body: {
          content: 'step 1\nstep 2\n',
          offset: 0,
          next_offset: 14,
          size: 14,
          eof: true,
          complete: false
        }
      }
    });
    const p = (await t.open()).panel;
    t.model?.select('aaaaaaaaaaaaaaaa');
    await sleep(300);
    const details = p.node.querySelector('.jp-AWSJobs-details');
    expect(details?.getAttribute('data-job-id')).toBe('aaaaaaaaaaaaaaaa');
    expect(details?.querySelector('.jp-AWSJobs-stopButton')).not.toBeNull();
    expect(p.node.querySelector('.jp-AWSJobs-log')?.textContent).toBe(
      'step 1\nstep 2\n'
    );
  });

  it('says so when the server extension is missing', async () => {
    t.server = mockServer({});
    const p = (await t.open()).panel;
    expect(p.node.querySelector('.jp-AWSJobs-missing')?.textContent).toContain(
      'server extension is not running'
    );
  });

  it('shows server errors in an error bar', async () => {
    t.server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 500,
        body: { message: 'database is locked', reason: 'Error' }
      }
    });
    const p = (await t.open()).panel;
    expect(p.node.querySelector('.jp-AWSJobs-errorBar')?.textContent).toContain(
      'database is locked'
    );
  });
});
