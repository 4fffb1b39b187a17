import {
  clockStandby,
  endedJobs,
  JobsModel,
  mergeFirstPage,
  pollStandby
} from '../model';
import { JobsService } from '../service';
import type { IJob } from '../tokens';
import { makeConfig, makeJob, mockServer, settings } from './fixtures';

const CONFIG = makeConfig();

describe('polling decisions', () => {
  it('stands by only when hidden and nothing is active', () => {
    expect(pollStandby(false, false)).toBe(true);
    expect(pollStandby(true, false)).toBe('when-hidden');
    expect(pollStandby(false, true)).toBe('when-hidden');
    expect(pollStandby(true, true)).toBe('when-hidden');
  });
  it('ticks the clock only when visible with active jobs', () => {
    expect(clockStandby(true, true)).toBe(false);
    expect(clockStandby(false, true)).toBe(true);
    expect(clockStandby(true, false)).toBe(true);
  });
});

describe('endedJobs and mergeFirstPage', () => {
  it('finds the jobs that went from active to terminal', () => {
    const before = new Map<string, IJob>([
      ['a', makeJob({ id: 'a', state: 'running' })],
      ['b', makeJob({ id: 'b', state: 'succeeded' })],
      ['c', makeJob({ id: 'c', state: 'stopping' })]
    ]);
    const after = [
      makeJob({ id: 'a', state: 'failed' }),
      makeJob({ id: 'b', state: 'succeeded' }),
      makeJob({ id: 'c', state: 'stopping' }),
      makeJob({ id: 'd', state: 'succeeded' })
    ];
    expect(endedJobs(before, after).map(j => j.id)).toEqual(['a']);
  });

  it('keeps older loaded pages under a fresh first page', () => {
    const page = [
      makeJob({ id: 'n', created_at: 30 }),
      makeJob({ id: 'm', created_at: 20 })
    ];
    const listed = [
      makeJob({ id: 'm', created_at: 20, state: 'pending' }),
      makeJob({ id: 'o', created_at: 10 })
    ];
    expect(mergeFirstPage(page, listed, true).map(j => j.id)).toEqual([
      'n',
      'm',
      'o'
    ]);
    expect(mergeFirstPage(page, listed, false).map(j => j.id)).toEqual([
      'n',
      'm'
    ]);
    expect(mergeFirstPage(page, listed, true)[1].state).toBe('running');
  });
});

describe('JobsModel', () => {
  let server: ReturnType<typeof mockServer> | null = null;
  let model: JobsModel | null = null;
  afterEach(() => {
    model?.dispose();
    model = null;
    server?.restore();
    server = null;
  });

  const create = () =>
    (model = new JobsModel({
      service: new JobsService(settings()),
      autoStart: false
    }));

  it('loads config and jobs, and signals the change', async () => {
    const jobs = [
      makeJob({ id: 'b', created_at: 2 }),
      makeJob({ id: 'a', created_at: 1, state: 'succeeded' })
    ];
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': { status: 200, body: { jobs, next_cursor: 'next' } }
    });
    const m = create();
    const changed = jest.fn();
    m.changed.connect(changed);
    await m.refresh();
    expect(changed).toHaveBeenCalled();
    expect(m.serverStatus).toBe('ok');
    expect(m.config?.default_backend).toBe('local');
    expect(m.jobs.map(j => j.id)).toEqual(['b', 'a']);
    expect(m.hasMore).toBe(true);
    expect(m.hasActive).toBe(true);
    expect(m.error).toBeNull();
  });

  it('loads the config once, however many ask at the same time', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': { status: 200, body: { jobs: [], next_cursor: null } }
    });
    const m = create();
    const [a, b] = await Promise.all([m.ensureConfig(), m.ensureConfig()]);
    await m.refresh();
    expect(a).toBe(b);
    expect(await m.ensureConfig()).toBe(a);
    expect(
      server.requests.filter(r => r.path === 'config').map(r => r.method)
    ).toEqual(['GET']);
  });

  it('says when the server extension is missing', async () => {
    server = mockServer({});
    const m = create();
    await m.refresh();
    expect(m.serverStatus).toBe('missing');
    expect(m.error).toBeNull();
  });

  it('shows server errors in the model, not only in the console', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 502,
        body: { message: 'AWS said no', reason: 'Bad Gateway' }
      }
    });
    const m = create();
    await m.refresh();
    expect(m.error).toBe('AWS said no');
    m.clearError();
    expect(m.error).toBeNull();
  });

  it('emits jobEnded when a watched job finishes', async () => {
    let state = 'running';
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': () => ({
        status: 200,
        body: {
          jobs: [makeJob({ id: 'x', state: state as IJob['state'] })],
          next_cursor: null
        }
      })
    });
    const m = create();
    const ended: string[] = [];
    m.jobEnded.connect((_, job) => ended.push(`${job.id}:${job.state}`));
    await m.refresh();
    expect(ended).toEqual([]);
    state = 'succeeded';
    await m.refresh();
    expect(ended).toEqual(['x:succeeded']);
    await m.refresh();
    expect(ended).toEqual(['x:succeeded']);
  });

  it('watches active jobs that the filter hides', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': request => ({
        status: 200,
        body: {
          jobs: request.query.get('state')
            ? []
            : [makeJob({ id: 'x', state: 'running' })],
          next_cursor: null
        }
      }),
      'GET jobs/x': { status: 200, body: makeJob({ id: 'x', state: 'failed' }) }
    });
    const m = create();
    const ended = jest.fn();
    m.jobEnded.connect(ended);
    await m.refresh();
    m.setStateFilter(['succeeded']);
    await m.refresh();
    expect(m.jobs).toHaveLength(0);
    expect(ended).toHaveBeenCalledTimes(1);
    expect(server.requests.some(r => r.path === 'jobs/x')).toBe(true);
  });

  it('shows stopping at once, then the server answer', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 200,
        body: { jobs: [makeJob({ id: 'x' })], next_cursor: null }
      },
      'POST jobs/x/stop': async () => {
        // While the request is in flight, the model already says stopping.
        expect(model?.get('x')?.state).toBe('stopping');
        return {
          status: 202,
          body: makeJob({ id: 'x', state: 'stopping', stop_requested: true })
        };
      }
    });
    const m = create();
    await m.refresh();
    const job = await m.stop('x');
    expect(job.state).toBe('stopping');
    expect(m.jobs[0].state).toBe('stopping');
  });

  it('restores the state when stop fails, and rethrows', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 200,
        body: { jobs: [makeJob({ id: 'x' })], next_cursor: null }
      },
      'POST jobs/x/stop': {
        status: 502,
        body: { message: 'cannot reach EC2', reason: 'Bad Gateway' }
      }
    });
    const m = create();
    await m.refresh();
    await expect(m.stop('x')).rejects.toThrow('cannot reach EC2');
    expect(m.get('x')?.state).toBe('running');
  });

  it('adds a submitted job at the top and removes a deleted one', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 200,
        body: {
          jobs: [makeJob({ id: 'old', created_at: 1, state: 'succeeded' })],
          next_cursor: null
        }
      },
      'POST jobs': {
        status: 201,
        body: makeJob({ id: 'new', created_at: 5, state: 'pending' })
      },
      'DELETE jobs/old': { status: 204 }
    });
    const m = create();
    await m.refresh();
    const job = await m.submit({ path: 'a.py' });
    expect(job.id).toBe('new');
    expect(m.jobs.map(j => j.id)).toEqual(['new', 'old']);
    m.select('old');
    await m.remove('old');
    expect(m.jobs.map(j => j.id)).toEqual(['new']);
    expect(m.selectedId).toBeNull();
  });

  it('loads more with the cursor', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': request =>
        request.query.get('cursor') === 'p2'
          ? {
              status: 200,
              body: {
                jobs: [makeJob({ id: 'older', created_at: 1 })],
                next_cursor: null
              }
            }
          : {
              status: 200,
              body: {
                jobs: [makeJob({ id: 'newer', created_at: 9 })],
                next_cursor: 'p2'
              }
            }
    });
    const m = create();
    await m.refresh();
    await m.loadMore();
    expect(m.jobs.map(j => j.id)).toEqual(['newer', 'older']);
    expect(m.hasMore).toBe(false);
    await m.refresh();
    expect(m.jobs.map(j => j.id)).toEqual(['newer', 'older']);
  });

  it('stands by when hidden with nothing active', async () => {
    server = mockServer({
      'GET config': { status: 200, body: CONFIG },
      'GET jobs': {
        status: 200,
        body: {
          jobs: [makeJob({ id: 'a', state: 'succeeded' })],
          next_cursor: null
        }
      }
    });
    const m = create();
    await m.refresh();
    expect(m.shouldStandby()).toBe(true);
    m.setVisible(true);
    expect(m.shouldStandby()).toBe('when-hidden');
  });
});
