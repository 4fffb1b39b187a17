import { Notification } from '@jupyterlab/apputils';
import { nullTranslator } from '@jupyterlab/translation';
import { dangerDialog, dismissDialog } from '@jupyterlab/testutils';

import { offeredBackends } from '../backends';
import { confirmThenAct, IConfirmThenAct } from '../commands/confirm';
import { initialForm } from '../launch/form';
import { DEFAULT_SETTINGS, IJobsModel } from '../tokens';
import { filterStates, filterValue } from '../widgets/JobsPanel';
import { makeConfig } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');

const CONFIG = makeConfig();

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

describe('confirmThenAct (Stop and Remove)', () => {
  afterEach(() => {
    Notification.manager.dismiss();
  });

  const run = (overrides: Partial<IConfirmThenAct>, acted: string[]) =>
    confirmThenAct({
      ask: true,
      title: 'Stop job?',
      body: 'Stop "a.py"?',
      acceptLabel: 'Stop job',
      act: async () => {
        acted.push('act');
      },
      failure: error => `Could not stop a.py: ${error}`,
      trans,
      ...overrides
    });

  it('acts once the warning button is pressed', async () => {
    const acted: string[] = [];
    const done = run({}, acted);
    await dangerDialog();
    expect(await done).toBe(true);
    expect(acted).toEqual(['act']);
  });

  it('does nothing when the dialog is cancelled', async () => {
    const acted: string[] = [];
    const done = run({}, acted);
    await dismissDialog();
    expect(await done).toBe(false);
    expect(acted).toEqual([]);
  });

  it('acts without asking when told not to ask', async () => {
    const acted: string[] = [];
    expect(await run({ ask: false }, acted)).toBe(true);
    expect(acted).toEqual(['act']);
    expect(document.querySelector('.jp-Dialog')).toBeNull();
  });

  it('reports a failure as a notification, never a rejection', async () => {
    const done = await run(
      {
        ask: false,
        act: async () => {
          throw new Error('job is gone');
        }
      },
      []
    );
    expect(done).toBe(false);
    expect(Notification.manager.notifications.map(n => n.message)).toContain(
      'Could not stop a.py: job is gone'
    );
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
