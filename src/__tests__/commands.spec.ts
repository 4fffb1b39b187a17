import { initialForm, offeredBackends } from '../commands';
import { DEFAULT_SETTINGS, IJobsModel, IServerConfig } from '../tokens';
import { filterStates, filterValue } from '../widgets/JobsPanel';

const CONFIG: IServerConfig = {
  backends: [
    { id: 'local', label: 'This machine', configured: true },
    { id: 'ec2', label: 'EC2', configured: false }
  ],
  default_backend: 'local',
  defaults: {
    memory_gib: 4,
    cpus: 1,
    spot: false,
    max_lifetime_minutes: 240,
    max_allowed_lifetime_minutes: 10080
  },
  aws_configured: false,
  extensions: []
};

const model = (settings = {}): IJobsModel =>
  ({ settings: { ...DEFAULT_SETTINGS, ...settings } }) as unknown as IJobsModel;

describe('launch dialog defaults', () => {
  it('offers only configured backends', () => {
    expect(offeredBackends(CONFIG).map(b => b.id)).toEqual(['local']);
  });

  it('starts from the settings registry', () => {
    const form = initialForm(model({ memoryGib: 8, cpus: 3 }), CONFIG, null);
    expect(form).toMatchObject({
      backend: 'local',
      memoryGib: '8',
      cpus: '3',
      maxLifetimeMinutes: String(DEFAULT_SETTINGS.maxLifetimeMinutes),
      logPath: '',
      parameters: ''
    });
  });

  it('prefers the remembered values, but never an unconfigured backend', () => {
    const form = initialForm(model(), CONFIG, {
      backend: 'ec2',
      memoryGib: '16',
      env: 'A=1'
    });
    expect(form.backend).toBe('local');
    expect(form.memoryGib).toBe('16');
    expect(form.env).toBe('A=1');
  });
});

describe('state filter', () => {
  it('maps select values to states and back', () => {
    expect(filterStates('all')).toEqual([]);
    expect(filterStates('running')).toEqual(['running']);
    expect(filterValue(filterStates('active'))).toBe('active');
    expect(filterValue(filterStates('finished'))).toBe('finished');
    expect(filterValue(['failed'])).toBe('failed');
    expect(filterValue([])).toBe('all');
  });
});
