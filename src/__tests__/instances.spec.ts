import { nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { instancesStatusText } from '../components/InstancesStatus';
import {
  IInstance,
  instancesConfigured,
  InstancesModel,
  runningFigures,
  sortInstances,
  terminateQuestion
} from '../instances';
import { JobsModel } from '../model';
import { JobsService } from '../service';
import { JobsPanel } from '../widgets/JobsPanel';
import { EC2, makeConfig, makeJob, mockServer, settings } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function makeInstance(overrides: Partial<IInstance> = {}): IInstance {
  return {
    instance_id: 'i-0000000000000000a',
    instance_type: 'm6i.large',
    spot: true,
    state: 'running',
    launch_time: 1000,
    job_id: 'aaaaaaaaaaaaaaaa',
    role: 'job',
    expires_at: 9000,
    owner: 'tester',
    name: null,
    hourly_price: 0.36,
    cost_so_far: 0.1,
    availability_zone: 'us-east-1a',
    orphan: false,
    ...overrides
  };
}

const WORKER = makeInstance();
const ORPHAN = makeInstance({
  instance_id: 'i-0000000000000000b',
  job_id: 'bbbbbbbbbbbbbbbb',
  launch_time: 2000,
  orphan: true
});
const BUILDER = makeInstance({
  instance_id: 'i-0000000000000000c',
  job_id: null,
  role: 'image-builder',
  launch_time: 500,
  hourly_price: null,
  cost_so_far: null
});

describe('instance rows', () => {
  it('puts orphans first, then the oldest', () => {
    const ids = sortInstances([WORKER, ORPHAN, BUILDER]).map(
      r => r.instance_id
    );
    expect(ids).toEqual([
      ORPHAN.instance_id,
      BUILDER.instance_id,
      WORKER.instance_id
    ]);
  });

  it('names every instance and its cost so far in the confirmation', () => {
    const text = terminateQuestion([ORPHAN, BUILDER], 2000 + 3600, trans);
    expect(text).toBe(
      'Terminate these 2 instances: i-0000000000000000b ($0.3600 so far), ' +
        'i-0000000000000000c (cost unknown)?'
    );
  });

  it('says that a job on a terminated instance is stopped', () => {
    const text = terminateQuestion([WORKER], 1000 + 1800, trans);
    expect(text).toBe(
      'Terminate this instance: i-0000000000000000a ($0.1800 so far)? ' +
        'A job running on one is stopped.'
    );
  });

  it('counts running instances and their spend per hour', () => {
    const gone = makeInstance({ state: 'shutting-down' });
    expect(runningFigures([WORKER, ORPHAN, BUILDER, gone])).toEqual({
      count: 3,
      hourly: 0.72
    });
  });

  it('lists instances only from a configured backend that has them', () => {
    expect(instancesConfigured(makeConfig())).toBe(false);
    expect(instancesConfigured(makeConfig({ backends: [EC2] }))).toBe(true);
  });
});

describe('the Instances view', () => {
  let server: ReturnType<typeof mockServer> | null = null;
  let panel: JobsPanel | null = null;
  let jobs: JobsModel | null = null;
  let instances: InstancesModel | null = null;
  afterEach(() => {
    panel?.dispose();
    instances?.dispose();
    jobs?.dispose();
    server?.restore();
    panel = jobs = instances = server = null;
  });

  const open = async () => {
    const service = new JobsService(settings());
    jobs = new JobsModel({ service, autoStart: false });
    instances = new InstancesModel({ service, jobs });
    panel = new JobsPanel({
      model: jobs,
      commands: new CommandRegistry(),
      trans,
      translator: nullTranslator,
      instances
    });
    Widget.attach(panel, document.body);
    await sleep(100);
    await jobs.refresh();
    instances.setShown(true);
    await sleep(300);
    return panel;
  };

  const jobList = {
    status: 200,
    body: { jobs: [makeJob({ id: WORKER.job_id! })], next_cursor: null }
  };

  /** A server with a configured EC2 backend that lists these instances. */
  const serveInstances = (
    rows: IInstance[],
    more: Parameters<typeof mockServer>[0] = {}
  ) =>
    mockServer({
      'GET config': { status: 200, body: makeConfig({ backends: [EC2] }) },
      'GET jobs': jobList,
      'GET instances': { status: 200, body: { instances: rows } },
      ...more
    });

  it('shows each instance, orphans first and flagged', async () => {
    server = serveInstances([WORKER, ORPHAN, BUILDER]);
    const p = await open();
    const rows = Array.from(
      p.node.querySelectorAll<HTMLElement>('.jp-AWSJobs-instance')
    );
    expect(rows.map(r => r.dataset.instanceId)).toEqual([
      ORPHAN.instance_id,
      BUILDER.instance_id,
      WORKER.instance_id
    ]);
    expect(rows[0].querySelector('.jp-AWSJobs-orphan')?.textContent).toBe(
      'orphan'
    );
    expect(rows[1].textContent).toContain('image builder');
    expect(rows[2].querySelector('.jp-AWSJobs-orphan')).toBeNull();
    expect(rows[2].textContent).toContain('m6i.large · spot · us-east-1a');
    expect(rows[2].textContent).toContain('$0.3600/h');
    expect(p.node.querySelector('.jp-AWSJobs-terminateOrphans')).not.toBeNull();
  });

  it('selects the job of an instance from its link', async () => {
    server = serveInstances([WORKER]);
    const p = await open();
    p.node.querySelector<HTMLElement>('.jp-AWSJobs-instanceJob')?.click();
    await sleep(50);
    expect(jobs?.selectedId).toBe(WORKER.job_id);
    expect(instances?.shown).toBe(false);
  });

  it("tells the server's message when the backend is not configured", async () => {
    const message =
      'The EC2 backend is not configured: set c.EC2Backend.subnet_ids';
    server = mockServer({
      'GET config': { status: 200, body: makeConfig() },
      'GET jobs': jobList,
      'GET instances': {
        status: 400,
        body: { message, reason: 'not_configured' }
      }
    });
    const p = await open();
    expect(
      p.node.querySelector('.jp-AWSJobs-instancesError')?.textContent
    ).toBe(message);
    expect(p.node.querySelectorAll('.jp-AWSJobs-instance')).toHaveLength(0);
  });

  it('shows terminated instances shutting down until AWS confirms', async () => {
    server = serveInstances([WORKER, ORPHAN], {
      'POST instances/stop': {
        status: 200,
        body: { terminated: [ORPHAN.instance_id] }
      }
    });
    const p = await open();
    await instances?.terminate([ORPHAN.instance_id]);
    await sleep(50);
    const orphanRow = p.node.querySelector(
      `[data-instance-id="${ORPHAN.instance_id}"]`
    );
    expect(orphanRow?.textContent).toContain('shutting-down');
    expect(orphanRow?.querySelector('.jp-AWSJobs-terminate')).toBeNull();
    const stop = server.requests.find(r => r.path === 'instances/stop');
    expect(stop?.body).toEqual({ instance_ids: [ORPHAN.instance_id] });
  });

  it('puts the running instances and their spend in the status bar', async () => {
    server = serveInstances([WORKER, ORPHAN, BUILDER]);
    await open();
    expect(instancesStatusText(instances!, trans)).toBe(
      'EC2: 3 running · $0.7200/h'
    );
  });
});
