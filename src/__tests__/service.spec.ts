import { ApiError, errorMessage } from '../handler';
import { JobsService, queryString } from '../service';
import { makeJob, mockServer, settings } from './fixtures';

describe('queryString', () => {
  it('skips empty values and encodes the rest', () => {
    expect(queryString({ a: 1, b: null, c: undefined, d: '', e: 'x y' })).toBe(
      '?a=1&e=x%20y'
    );
    expect(queryString({})).toBe('');
  });
});

describe('errorMessage', () => {
  it("prefers the server's message", () => {
    expect(
      errorMessage(
        { message: 'memory_gib: must be above 0', reason: 'Bad Request' },
        400,
        'Bad Request'
      )
    ).toEqual({
      message: 'memory_gib: must be above 0',
      reason: 'Bad Request'
    });
  });
  it('falls back to the reason, then to the status', () => {
    expect(errorMessage({ reason: 'Conflict' }, 409, 'Conflict').message).toBe(
      'Conflict'
    );
    expect(
      errorMessage('<html>oops</html>', 500, 'Internal Server Error').message
    ).toBe('500 Internal Server Error');
    expect(errorMessage('plain text', 502, 'Bad Gateway').message).toBe(
      'plain text'
    );
  });
});

describe('JobsService', () => {
  let server: ReturnType<typeof mockServer> | null = null;
  afterEach(() => {
    server?.restore();
    server = null;
  });

  it('lists jobs with the state filter, limit and cursor', async () => {
    const job = makeJob();
    server = mockServer({
      'GET jobs': { status: 200, body: { jobs: [job], next_cursor: 'abc' } }
    });
    const service = new JobsService(settings());
    const page = await service.listJobs({
      state: ['running', 'pending'],
      limit: 50,
      cursor: 'c1'
    });
    expect(page.jobs[0].id).toBe(job.id);
    expect(page.next_cursor).toBe('abc');
    const [request] = server.requests;
    expect(
      request.url.startsWith('http://localhost:8888/base/awsjobs/api/jobs?')
    ).toBe(true);
    expect(request.query.get('state')).toBe('running,pending');
    expect(request.query.get('limit')).toBe('50');
    expect(request.query.get('cursor')).toBe('c1');
  });

  it('posts a launch request as JSON and returns the job', async () => {
    server = mockServer({
      'POST jobs': { status: 201, body: makeJob({ state: 'pending' }) }
    });
    const service = new JobsService(settings());
    const job = await service.submit({
      path: 'work/train.py',
      backend: 'local',
      memory_gib: 2,
      cpus: 1,
      env: { SEED: '1' }
    });
    expect(job.state).toBe('pending');
    expect(server.requests[0].method).toBe('POST');
    expect(server.requests[0].body).toEqual({
      path: 'work/train.py',
      backend: 'local',
      memory_gib: 2,
      cpus: 1,
      env: { SEED: '1' }
    });
  });

  it('stops, reads and deletes a job at its own URL', async () => {
    const id = '0123456789abcdef';
    server = mockServer({
      [`POST jobs/${id}/stop`]: {
        status: 202,
        body: makeJob({ state: 'stopping' })
      },
      [`GET jobs/${id}`]: { status: 200, body: makeJob() },
      [`DELETE jobs/${id}`]: { status: 204 },
      [`GET jobs/${id}/log`]: {
        status: 200,
        body: {
          content: 'hi\n',
          offset: 10,
          next_offset: 13,
          size: 13,
          eof: true,
          complete: false
        }
      }
    });
    const service = new JobsService(settings());
    expect((await service.stopJob(id)).state).toBe('stopping');
    expect((await service.getJob(id)).id).toBe(id);
    await expect(service.deleteJob(id)).resolves.toBeUndefined();
    const chunk = await service.readLog(id, 10, 4096);
    expect(chunk.content).toBe('hi\n');
    const log = server.requests.find(r => r.path.endsWith('/log'));
    expect(log?.query.get('offset')).toBe('10');
    expect(log?.query.get('limit')).toBe('4096');
    expect(server.requests.map(r => `${r.method} ${r.path}`)).toEqual([
      `POST jobs/${id}/stop`,
      `GET jobs/${id}`,
      `DELETE jobs/${id}`,
      `GET jobs/${id}/log`
    ]);
  });

  it('asks for instance types with the numbers and spot flag', async () => {
    server = mockServer({
      'GET instance-types': {
        status: 200,
        body: {
          choice: {
            instance_type: 'm6i.large',
            vcpus: 2,
            memory_gib: 8,
            hourly_price: 0.04,
            spot: true
          },
          candidates: []
        }
      }
    });
    const service = new JobsService(settings());
    const answer = await service.instanceTypes({
      memory_gib: 8,
      cpus: 2,
      spot: true
    });
    expect(answer.choice.instance_type).toBe('m6i.large');
    const q = server.requests[0].query;
    expect(q.get('memory_gib')).toBe('8');
    expect(q.get('cpus')).toBe('2');
    expect(q.get('spot')).toBe('true');
    expect(q.has('instance_type')).toBe(false);
  });

  it("carries the server's message and status in ApiError", async () => {
    server = mockServer({
      'POST jobs': {
        status: 400,
        body: { message: 'memory_gib: must be above 0', reason: 'Bad Request' }
      },
      'DELETE jobs/0123456789abcdef': {
        status: 409,
        body: {
          message: 'job 0123456789abcdef is still running',
          reason: 'Conflict'
        }
      },
      'GET instance-types': {
        status: 400,
        body: { message: 'EC2 is not configured', reason: 'Bad Request' }
      }
    });
    const service = new JobsService(settings());
    await expect(
      service.submit({ path: 'a.py', memory_gib: 0 })
    ).rejects.toMatchObject({
      name: 'ApiError',
      status: 400,
      message: 'memory_gib: must be above 0'
    });
    const error = await service.deleteJob('0123456789abcdef').catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(409);
    expect(error.message).toBe('job 0123456789abcdef is still running');
    await expect(
      service.instanceTypes({ memory_gib: 1, cpus: 1, spot: false })
    ).rejects.toThrow('EC2 is not configured');
  });

  it('reports a missing server extension as a 404', async () => {
    server = mockServer({});
    const service = new JobsService(settings());
    const error = await service.getConfig().catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(404);
  });
});
