import { nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { JobsModel } from '../model';
import { JobsService } from '../service';
import { JobsPanel } from '../widgets/JobsPanel';
import { makeConfig, makeJob, mockServer, settings } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

// As the server serves it: the EC2 backend is described even when not configured.
const CONFIG = makeConfig();

describe('JobsPanel', () => {
  let server: ReturnType<typeof mockServer> | null = null;
  let panel: JobsPanel | null = null;
  let model: JobsModel | null = null;
  afterEach(() => {
    panel?.dispose();
    model?.dispose();
    server?.restore();
    panel = model = server = null;
  });

  const open = async () => {
    model = new JobsModel({
      service: new JobsService(settings()),
      autoStart: false
    });
    const commands = new CommandRegistry();
    panel = new JobsPanel({
      model,
      commands,
      trans,
      translator: nullTranslator
    });
    Widget.attach(panel, document.body);
    await sleep(100);
    await model.refresh();
    await sleep(300);
    return panel;
  };

  it('lists jobs with their state, backend, instance and cost', async () => {
    server = mockServer({
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
    const p = await open();
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
    server = mockServer({
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
    const p = await open();
    model?.select('aaaaaaaaaaaaaaaa');
    await sleep(300);
    const details = p.node.querySelector('.jp-AWSJobs-details');
    expect(details?.getAttribute('data-job-id')).toBe('aaaaaaaaaaaaaaaa');
    expect(details?.querySelector('.jp-AWSJobs-stopButton')).not.toBeNull();
    expect(p.node.querySelector('.jp-AWSJobs-log')?.textContent).toBe(
      'step 1\nstep 2\n'
    );
  });

  it('says so when the server extension is missing', async () => {
    server = mockServer({});
    const p = await open();
    expect(p.node.querySelector('.jp-AWSJobs-missing')?.textContent).toContain(
      'server extension is not running'
    );
  });

  it('shows server errors in an error bar', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 500,
        body: { message: 'database is locked', reason: 'Error' }
      }
    });
    const p = await open();
    expect(p.node.querySelector('.jp-AWSJobs-errorBar')?.textContent).toContain(
      'database is locked'
    );
  });
});
