import { nullTranslator } from '@jupyterlab/translation';

import {
  formatEnv,
  formFromJob,
  ILaunchContext,
  ILaunchForm,
  limitsFor,
  parseEnv,
  parseParameters,
  validateLaunch
} from '../validation';
import { EC2, LOCAL, makeBackend, makeForm, makeJob } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');

const form = (overrides: Partial<ILaunchForm> = {}): ILaunchForm =>
  makeForm({ backend: 'local', ...overrides });

const context = (overrides: Partial<ILaunchContext> = {}): ILaunchContext => ({
  path: 'work/train.py',
  isNotebook: false,
  backends: [LOCAL, EC2],
  limits: { memory_gib: 24576, cpus: 448, max_lifetime_minutes: 1440 },
  ...overrides
});

describe('validateLaunch', () => {
  it('turns a valid form into a request', () => {
    const { errors, request } = validateLaunch(
      form({ env: 'SEED=1\n# comment\n\nNAME = x=y' }),
      context(),
      trans
    );
    expect(errors).toEqual({});
    expect(request).toEqual({
      path: 'work/train.py',
      backend: 'local',
      memory_gib: 4,
      cpus: 2,
      spot: true,
      max_lifetime_minutes: 60,
      env: { SEED: '1', NAME: ' x=y' }
    });
  });

  it.each([
    ['memoryGib', '0'],
    ['memoryGib', '-1'],
    ['memoryGib', 'lots'],
    ['memoryGib', ''],
    ['cpus', '0'],
    ['cpus', '1.5'],
    ['maxLifetimeMinutes', '0'],
    ['maxLifetimeMinutes', '2000'],
    ['logPath', '/etc/passwd'],
    ['logPath', '../outside.log'],
    ['logPath', 'logs/'],
    ['env', 'NOT VALID'],
    ['env', '1X=2'],
    ['instanceType', 'not a type'],
    ['backend', 'nowhere']
  ])('refuses %s = %p', (field, value) => {
    const { errors, request } = validateLaunch(
      form({ [field]: value } as Partial<ILaunchForm>),
      context(),
      trans
    );
    expect(request).toBeNull();
    expect(errors[field as keyof ILaunchForm]).toBeTruthy();
  });

  it('says why memory 0 is refused', () => {
    const { errors } = validateLaunch(
      form({ memoryGib: '0' }),
      context(),
      trans
    );
    expect(errors.memoryGib).toBe('Memory must be a number of GiB above 0');
  });

  it('takes parameters for notebooks only', () => {
    const nb = context({ path: 'a.ipynb', isNotebook: true });
    const ok = validateLaunch(
      form({ parameters: '{"alpha": 0.5}' }),
      nb,
      trans
    );
    expect(ok.request?.parameters).toEqual({ alpha: 0.5 });
    const bad = validateLaunch(form({ parameters: '[1, 2]' }), nb, trans);
    expect(bad.errors.parameters).toContain('JSON object');
    const broken = validateLaunch(form({ parameters: '{alpha' }), nb, trans);
    expect(broken.errors.parameters).toContain('Not valid JSON');
    const script = validateLaunch(
      form({ parameters: '{alpha' }),
      context(),
      trans
    );
    expect(script.errors.parameters).toBeUndefined();
    expect(script.request?.parameters).toBeUndefined();
  });

  it('sends the instance type and log path when given', () => {
    const { request } = validateLaunch(
      form({
        backend: 'ec2',
        instanceType: ' m6i.large ',
        logPath: 'logs/run.log'
      }),
      context(),
      trans
    );
    expect(request?.instance_type).toBe('m6i.large');
    expect(request?.log_path).toBe('logs/run.log');
    const local = validateLaunch(
      form({ instanceType: 'm6i.large' }),
      context(),
      trans
    );
    expect(local.request?.instance_type).toBeUndefined();
  });
});

describe('limits and capabilities from GET config', () => {
  it("refuses values above the server's limits", () => {
    const limits = { memory_gib: 64, cpus: 8, max_lifetime_minutes: 120 };
    const { errors } = validateLaunch(
      form({ memoryGib: '65', cpus: '9', maxLifetimeMinutes: '121' }),
      context({ limits }),
      trans
    );
    expect(errors.memoryGib).toBe('Memory must be at most 64 GiB');
    expect(errors.cpus).toBe('CPUs must be at most 8');
    expect(errors.maxLifetimeMinutes).toBe(
      'Maximum lifetime must be at most 120 minutes'
    );
    const atLimit = validateLaunch(
      form({ memoryGib: '64', cpus: '8', maxLifetimeMinutes: '120' }),
      context({ limits }),
      trans
    );
    expect(atLimit.errors).toEqual({});
  });

  it("narrows the lifetime to the chosen backend's own limit", () => {
    const capped = makeBackend('capped', { max_lifetime_minutes: 2880 });
    const limits = { memory_gib: 64, cpus: 8, max_lifetime_minutes: 10080 };
    const onCapped = validateLaunch(
      form({ backend: 'capped', maxLifetimeMinutes: '2881' }),
      context({ backends: [LOCAL, capped], limits }),
      trans
    );
    expect(onCapped.errors.maxLifetimeMinutes).toBe(
      'Maximum lifetime must be at most 2880 minutes'
    );
    const onLocal = validateLaunch(
      form({ backend: 'local', maxLifetimeMinutes: '2881' }),
      context({ backends: [LOCAL, capped], limits }),
      trans
    );
    expect(onLocal.errors).toEqual({});
    expect(limitsFor({ ...limits, max_lifetime_minutes: 0 }, capped)).toEqual({
      ...limits,
      max_lifetime_minutes: 2880
    });
  });

  it('sends an instance type to any backend that declares instance types', () => {
    const pool = makeBackend('pool', {
      capabilities: { instance_types: true }
    });
    const { request } = validateLaunch(
      form({ backend: 'pool', instanceType: 'g5.xlarge' }),
      context({ backends: [LOCAL, pool] }),
      trans
    );
    expect(request?.instance_type).toBe('g5.xlarge');
  });
});

describe('env and parameters', () => {
  it('round-trips environment variables', () => {
    const { env, error } = parseEnv('A=1\nB=two words', trans);
    expect(error).toBeNull();
    expect(formatEnv(env)).toBe('A=1\nB=two words');
    expect(parseEnv('=x', trans).error).toContain('Line 1');
  });

  it('accepts empty parameters', () => {
    expect(parseParameters('  ', trans)).toEqual({
      parameters: {},
      error: null
    });
  });
});

describe('formFromJob', () => {
  it('prefills a re-run with the same settings and a fresh log', () => {
    const job = makeJob({
      backend: 'ec2',
      memory_gib: 16,
      cpus: 4,
      spot: true,
      max_lifetime_minutes: 90,
      env: { SEED: '7' },
      parameters: { alpha: 1 },
      requested_instance_type: 'c6i.xlarge'
    });
    expect(formFromJob(job)).toEqual({
      backend: 'ec2',
      memoryGib: '16',
      cpus: '4',
      spot: true,
      maxLifetimeMinutes: '90',
      logPath: '',
      parameters: JSON.stringify({ alpha: 1 }, null, 2),
      args: '',
      env: 'SEED=7',
      instanceType: 'c6i.xlarge',
      onInterruption: 'retry',
      maxAttempts: '3',
      gpus: '0',
      gpuMemoryGib: '',
      gpuModel: ''
    });
  });
});
