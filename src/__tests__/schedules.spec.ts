/**
 * Schedules in the front end: the dialog's schedule fields and their
 * validation, the cron preview, the Schedules view and its calls, the jobs
 * of one schedule, and a job's schedule name in its row and details.
 */
import { nullTranslator } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { JobsModel } from '../model';
import {
  IScheduleForm,
  scheduleRequest,
  suggestedName,
  validateSchedule,
  whereSchedulesRun
} from '../schedules/form';
import { lastRun, SchedulesModel } from '../schedules/model';
import { SchedulesService } from '../schedules/service';
import type { ISchedule, ISchedulePreview } from '../schedules/tokens';
import { JobsService } from '../service';
import { JobsPanel } from '../widgets/JobsPanel';
import { LaunchDialogBody } from '../widgets/LaunchDialog';
import {
  EC2,
  LOCAL,
  makeBackend,
  makeConfig,
  makeForm,
  makeJob,
  mockServer,
  settings
} from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function makeScheduleForm(
  overrides: Partial<IScheduleForm> = {}
): IScheduleForm {
  return {
    mode: 'schedule',
    name: 'report-daily',
    cron: '0 6 * * 1-5',
    timezone: 'Europe/Paris',
    startAt: '',
    endAt: '',
    enabled: true,
    ...overrides
  };
}

function makeSchedule(overrides: Partial<ISchedule> = {}): ISchedule {
  return {
    name: 'report-daily',
    owner: 'tester',
    cron: '0 6 * * 1-5',
    timezone: 'Europe/Paris',
    start_at: null,
    end_at: null,
    enabled: true,
    job: { path: 'work/report.ipynb', backend: 'local' },
    description: 'at 06:00, Monday to Friday, Europe/Paris',
    next_runs: [
      { utc: '2030-01-07T05:00:00Z', local: '2030-01-07T06:00:00+01:00' }
    ],
    runs: [],
    backend: 'local',
    ...overrides
  };
}

const PREVIEW: ISchedulePreview = {
  description: 'at 06:00, Monday to Friday, Europe/Paris',
  next_runs: [
    { utc: '2030-01-07T05:00:00Z', local: '2030-01-07T06:00:00+01:00' },
    { utc: '2030-01-08T05:00:00Z', local: '2030-01-08T06:00:00+01:00' },
    { utc: '2030-01-09T05:00:00Z', local: '2030-01-09T06:00:00+01:00' }
  ]
};

/** Type into an input as a person would (React listens to `input`). */
function type(input: HTMLInputElement, value: string): void {
  const setter = Object.getOwnPropertyDescriptor(
    HTMLInputElement.prototype,
    'value'
  )?.set;
  setter?.call(input, value);
  input.dispatchEvent(new Event('input', { bubbles: true }));
}

describe('the schedule fields', () => {
  it('turn into the schedule part of POST schedules', () => {
    const { errors, fields } = validateSchedule(
      makeScheduleForm({
        cron: ' 0  6 * * 1-5 ',
        startAt: '2030-01-01T08:00',
        endAt: '2030-02-01T08:00'
      }),
      trans
    );
    expect(errors).toEqual({});
    expect(fields).toEqual({
      name: 'report-daily',
      cron: '0 6 * * 1-5',
      timezone: 'Europe/Paris',
      enabled: true,
      start_at: new Date('2030-01-01T08:00').toISOString(),
      end_at: new Date('2030-02-01T08:00').toISOString()
    });
    const job = { path: 'work/report.ipynb', backend: 'local' };
    expect(scheduleRequest(fields!, job).job).toBe(job);
  });

  it('refuse a bad name, cron, zone, or an end before the start', () => {
    const { errors, fields } = validateSchedule(
      makeScheduleForm({
        name: 'my report',
        cron: '0 6 * *',
        timezone: 'Mars/Olympus',
        startAt: '2030-02-01T08:00',
        endAt: '2030-01-01T08:00'
      }),
      trans
    );
    expect(fields).toBeNull();
    expect(Object.keys(errors).sort()).toEqual([
      'cron',
      'endAt',
      'name',
      'timezone'
    ]);
  });

  it('suggest a name from the file', () => {
    expect(suggestedName('work/My Report (v2).ipynb')).toBe(
      'My-Report-v2-daily'
    );
  });

  it('say where the schedule runs', () => {
    expect(whereSchedulesRun(LOCAL, trans)).toContain(
      'runs only while this Jupyter server runs'
    );
    const remote = makeBackend('ec2', { capabilities: { schedules: true } });
    expect(whereSchedulesRun(remote, trans)).toContain('lives in AWS');
  });

  it("say the server's grace for a missed local run", () => {
    expect(whereSchedulesRun(LOCAL, trans, 15)).toContain(
      'the latest missed run fires once if it is at most 15 minutes old'
    );
    expect(whereSchedulesRun(LOCAL, trans, 1)).toContain(
      'at most 1 minute old'
    );
    const none = whereSchedulesRun(LOCAL, trans, 0);
    expect(none).toContain('runs missed meanwhile are recorded as missed');
    expect(none).not.toContain('fires once');
    // An older server does not say: its default is told as such.
    expect(whereSchedulesRun(LOCAL, trans, null)).toContain(
      '60 minutes by default'
    );
    expect(whereSchedulesRun(LOCAL, trans, 15)).not.toContain('by default');
  });
});

describe('a schedule’s last run', () => {
  it('is the newest run, a missed one included', () => {
    const schedule = makeSchedule({
      runs: [
        { job_id: 'aaaaaaaaaaaaaaaa', state: 'succeeded', created_at: 100 },
        { job_id: null, state: 'missed', scheduled_for: 300 },
        { job_id: 'bbbbbbbbbbbbbbbb', state: 'failed', created_at: 200 }
      ]
    });
    expect(lastRun(schedule, [])?.state).toBe('missed');
  });

  it('is the newest listed job when the list carries no runs', () => {
    const job = makeJob({ schedule: 'report-daily', state: 'succeeded' });
    const run = lastRun(makeSchedule({ runs: undefined }), [job]);
    expect(run).toEqual({
      job_id: job.id,
      state: 'succeeded',
      created_at: job.created_at
    });
  });
});

describe('the launch dialog, "On a schedule"', () => {
  let body: LaunchDialogBody | null = null;
  afterEach(() => {
    body?.dispose();
    body = null;
  });

  const create = (
    preview: (cron: string) => Promise<ISchedulePreview>,
    config: ReturnType<typeof makeConfig> | null = null
  ) => {
    const asked: string[] = [];
    const schedules = {
      preview: (cron: string) => {
        asked.push(cron);
        return preview(cron);
      }
    } as unknown as SchedulesModel;
    body = new LaunchDialogBody({
      form: makeForm({ backend: 'local' }),
      context: {
        path: 'work/report.py',
        isNotebook: false,
        backends: [LOCAL, EC2],
        limits: { memory_gib: 0, cpus: 0, max_lifetime_minutes: 0 }
      },
      model: { config } as never,
      trans,
      schedule: {
        form: makeScheduleForm({ mode: 'now' }),
        model: schedules
      }
    });
    Widget.attach(body, document.body);
    return { body, asked };
  };

  const choose = async (b: LaunchDialogBody) => {
    await sleep(50);
    b.node.querySelector<HTMLInputElement>('input[value="schedule"]')?.click();
    await sleep(50);
  };

  it('reads the cron beside it, asked once after typing stops', async () => {
    const { body: b, asked } = create(async () => PREVIEW);
    await sleep(50);
    expect(b.node.querySelector('.jp-AWSJobs-schedule')).toBeNull();
    await choose(b);
    const cron = b.node.querySelector<HTMLInputElement>(
      'input[name="schedule-cron"]'
    )!;
    type(cron, '0 7 * * 1-5');
    await sleep(50);
    type(cron, '0 8 * * 1-5');
    await sleep(600);
    expect(asked).toEqual(['0 8 * * 1-5']);
    const preview = b.node.querySelector('.jp-AWSJobs-cronPreview');
    expect(preview?.textContent).toContain(
      'at 06:00, Monday to Friday, Europe/Paris'
    );
    expect(preview?.querySelectorAll('.jp-AWSJobs-nextRuns li')).toHaveLength(
      3
    );
    expect(b.node.textContent).toContain(
      'runs only while this Jupyter server runs'
    );
    expect(b.scheduleChoice?.fields?.cron).toBe('0 8 * * 1-5');
  });

  it("tells the server's grace for missed runs (GET config)", async () => {
    const config = makeConfig({ schedules: { missed_run_grace_minutes: 25 } });
    const { body: b } = create(async () => PREVIEW, config);
    await choose(b);
    expect(b.node.textContent).toContain(
      'the latest missed run fires once if it is at most 25 minutes old'
    );
    expect(b.node.textContent).not.toContain('60 minutes');
  });

  it("shows the server's refusal inline and blocks the accept button", async () => {
    const { body: b } = create(async () => {
      throw new Error('fires more often than every 5 minutes');
    });
    await choose(b);
    await sleep(600);
    expect(
      b.node.querySelector('.jp-AWSJobs-fieldError[data-field="cron"]')
        ?.textContent
    ).toBe('fires more often than every 5 minutes');
    expect(b.scheduleChoice?.blocksAccept).toBe(true);
  });
});

describe('the Schedules view', () => {
  let server: ReturnType<typeof mockServer> | null = null;
  let panel: JobsPanel | null = null;
  let jobs: JobsModel | null = null;
  let schedules: SchedulesModel | null = null;
  afterEach(() => {
    panel?.dispose();
    schedules?.dispose();
    jobs?.dispose();
    server?.restore();
    panel = jobs = schedules = server = null;
  });

  const scheduled = makeJob({
    id: 'cccccccccccccccc',
    schedule: 'report-daily',
    state: 'succeeded'
  });
  const other = makeJob({ id: 'dddddddddddddddd', state: 'succeeded' });

  const open = async () => {
    jobs = new JobsModel({
      service: new JobsService(settings()),
      autoStart: false
    });
    schedules = new SchedulesModel({
      service: new SchedulesService(settings()),
      jobs
    });
    const commands = new CommandRegistry();
    const { registerScheduleCommands } = await import('../schedules/commands');
    registerScheduleCommands({
      app: { commands, shell: { activateById: () => undefined } } as never,
      jobs,
      schedules,
      trans
    });
    panel = new JobsPanel({
      model: jobs,
      commands,
      trans,
      translator: nullTranslator,
      schedules
    });
    Widget.attach(panel, document.body);
    await sleep(100);
    await jobs.refresh();
    schedules.setShown(true);
    await sleep(300);
    return { panel, commands };
  };

  const serve = (more: Parameters<typeof mockServer>[0] = {}) =>
    mockServer({
      'GET config': { status: 200, body: makeConfig() },
      'GET jobs': {
        status: 200,
        body: { jobs: [scheduled, other], next_cursor: null }
      },
      'GET schedules': {
        status: 200,
        body: {
          schedules: [
            makeSchedule({
              runs: undefined,
              last_run: {
                job_id: scheduled.id,
                state: 'succeeded',
                created_at: 1000
              }
            })
          ]
        }
      },
      ...more
    });

  it('lists each schedule with its reading, next and last run', async () => {
    server = serve();
    const { panel: p } = await open();
    const row = p.node.querySelector<HTMLElement>(
      '.jp-AWSJobs-scheduleRow[data-schedule="report-daily"]'
    );
    expect(row?.textContent).toContain(
      'at 06:00, Monday to Friday, Europe/Paris'
    );
    expect(row?.querySelector('.jp-AWSJobs-nextRun')?.textContent).toMatch(
      /^Next .*2030/
    );
    expect(
      row?.querySelector('.jp-AWSJobs-lastRun')?.getAttribute('data-state')
    ).toBe('succeeded');
    expect(
      p.node.querySelector('.jp-AWSJobs-tab.jp-mod-current')?.textContent
    ).toBe('Schedules');
  });

  it('disables, runs now and deletes through the REST API', async () => {
    server = serve({
      'PATCH schedules/report-daily': {
        status: 200,
        body: makeSchedule({ enabled: false, next_runs: [] })
      },
      'POST schedules/report-daily/run': { status: 201, body: scheduled },
      'DELETE schedules/report-daily': { status: 204 }
    });
    const { panel: p, commands } = await open();
    p.node
      .querySelector<HTMLInputElement>('.jp-AWSJobs-scheduleToggle input')
      ?.click();
    await sleep(50);
    const patch = server.requests.find(r => r.method === 'PATCH');
    expect(patch?.body).toEqual({ enabled: false });
    expect(
      p.node
        .querySelector('.jp-AWSJobs-scheduleRow')
        ?.getAttribute('data-enabled')
    ).toBe('false');
    p.node.querySelector<HTMLElement>('.jp-AWSJobs-runSchedule')?.click();
    await sleep(50);
    expect(
      server.requests.some(
        r => r.method === 'POST' && r.path === 'schedules/report-daily/run'
      )
    ).toBe(true);
    await commands.execute('awsjobs:delete-schedule', {
      name: 'report-daily',
      confirm: false
    });
    await sleep(50);
    expect(
      server.requests.some(
        r => r.method === 'DELETE' && r.path === 'schedules/report-daily'
      )
    ).toBe(true);
    expect(p.node.querySelector('.jp-AWSJobs-scheduleRow')).toBeNull();
  });

  it('opens the jobs of a schedule, which show its name', async () => {
    server = serve();
    const { panel: p } = await open();
    p.node.querySelector<HTMLElement>('.jp-AWSJobs-scheduleJobs')?.click();
    await sleep(100);
    const listed = server.requests.filter(r => r.path === 'jobs');
    expect(listed[listed.length - 1].query.get('schedule')).toBe(
      'report-daily'
    );
    const rows = Array.from(
      p.node.querySelectorAll<HTMLElement>('.jp-AWSJobs-job')
    );
    expect(rows.map(r => r.dataset.jobId)).toEqual([scheduled.id]);
    expect(
      rows[0].querySelector('.jp-AWSJobs-scheduleBadge')?.textContent
    ).toBe('report-daily');
    expect(p.node.querySelector('.jp-AWSJobs-scheduleFilter')).not.toBeNull();
    p.node
      .querySelector<HTMLElement>('.jp-AWSJobs-clearScheduleFilter')
      ?.click();
    await sleep(100);
    expect(p.node.querySelectorAll('.jp-AWSJobs-job')).toHaveLength(2);
  });

  it('asks the server for the jobs of a schedule, beyond the newest page', async () => {
    // The newest page of every job holds none of the schedule's runs.
    const newest = makeJob({ id: 'eeeeeeeeeeeeeeee', state: 'succeeded' });
    server = serve({
      'GET jobs': request =>
        request.query.get('schedule') === 'report-daily'
          ? { status: 200, body: { jobs: [scheduled], next_cursor: null } }
          : { status: 200, body: { jobs: [newest], next_cursor: 'page-2' } }
    });
    const { panel: p } = await open();
    expect(jobs?.jobs.map(j => j.id)).toEqual([newest.id]);
    p.node.querySelector<HTMLElement>('.jp-AWSJobs-scheduleJobs')?.click();
    await sleep(100);
    expect(
      Array.from(p.node.querySelectorAll<HTMLElement>('.jp-AWSJobs-job')).map(
        r => r.dataset.jobId
      )
    ).toEqual([scheduled.id]);
    expect(jobs?.hasMore).toBe(false);
  });

  it('asks again when the filter changes while a page is on its way', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>(resolve => (release = resolve));
    server = serve({
      'GET jobs': async request => {
        if (!request.query.get('schedule')) {
          await held; // the unfiltered page arrives after the filter changed
          return { status: 200, body: { jobs: [other], next_cursor: 'x' } };
        }
        return { status: 200, body: { jobs: [scheduled], next_cursor: null } };
      }
    });
    jobs = new JobsModel({
      service: new JobsService(settings()),
      autoStart: false
    });
    const first = jobs.refresh();
    await sleep(20);
    jobs.setScheduleFilter('report-daily');
    release();
    await first;
    await sleep(100);
    const listed = server.requests.filter(r => r.path === 'jobs');
    expect(listed[listed.length - 1].query.get('schedule')).toBe(
      'report-daily'
    );
    expect(jobs.jobs.map(j => j.id)).toEqual([scheduled.id]);
    expect(jobs.hasMore).toBe(false);
  });

  it("tells the server's message when schedules cannot be listed", async () => {
    server = serve({
      'GET schedules': {
        status: 503,
        body: {
          message: 'The job store cannot be opened',
          reason: 'unavailable'
        }
      }
    });
    const { panel: p } = await open();
    expect(
      p.node.querySelector('.jp-AWSJobs-schedulesError')?.textContent
    ).toBe('The job store cannot be opened');
  });
});
