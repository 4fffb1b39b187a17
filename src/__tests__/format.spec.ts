import { nullTranslator } from '@jupyterlab/translation';

import { StateBadge, stateIcon } from '../components/StateBadge';
import {
  compareNewestFirst,
  costSoFar,
  defaultLogPathHint,
  elapsedSeconds,
  extensionOf,
  formatCost,
  formatDuration,
  formatPrice,
  isNotebookPath,
  isSupportedPath,
  stateClass,
  stateLabel,
  stateTone
} from '../format';
import {
  ACTIVE_STATES,
  isActiveState,
  JOB_STATES,
  TERMINAL_STATES
} from '../tokens';
import { makeConfig, makeJob } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');

describe('state rendering', () => {
  it('gives every state a label, a tone and its own class', () => {
    const classes = new Set<string>();
    for (const state of JOB_STATES) {
      expect(stateLabel(state, trans)).toBeTruthy();
      const cls = stateClass(state);
      expect(cls).toContain(`jp-AWSJobs-tone-${stateTone(state)}`);
      classes.add(cls.split(' ')[0]);
    }
    expect(classes.size).toBe(JOB_STATES.length);
  });

  it('colours outcomes clearly', () => {
    expect(stateTone('succeeded')).toBe('success');
    expect(stateTone('failed')).toBe('error');
    expect(stateTone('timed_out')).toBe('error');
    expect(stateTone('interrupted')).toBe('warn');
    expect(stateTone('running')).toBe('active');
    expect(stateTone('stopping')).toBe('warn');
    expect(stateTone('stopped')).toBe('neutral');
    expect(stateClass('timed_out')).toBe(
      'jp-AWSJobs-state-timed-out jp-AWSJobs-tone-error'
    );
    expect(stateLabel('timed_out', trans)).toBe('Timed out');
  });

  it('splits states into active and terminal', () => {
    expect([...ACTIVE_STATES].sort()).toEqual([
      'launching',
      'pending',
      'running',
      'stopping'
    ]);
    expect(TERMINAL_STATES.size).toBe(5);
    expect(isActiveState('stopping')).toBe(true);
    expect(isActiveState('stopped')).toBe(false);
  });

  it('renders a badge with the state, its label and icon', () => {
    const element = StateBadge({ state: 'failed', trans });
    expect(element.props['data-state']).toBe('failed');
    expect(element.props.className).toContain('jp-AWSJobs-tone-error');
    expect(element.props.title).toBe('Failed');
    expect(stateIcon('succeeded')).not.toBe(stateIcon('failed'));
  });
});

describe('elapsed time and cost', () => {
  it('ticks while active and freezes when finished', () => {
    const running = makeJob({
      started_at: 100,
      finished_at: null,
      state: 'running'
    });
    expect(elapsedSeconds(running, 160)).toBe(60);
    const done = makeJob({
      started_at: 100,
      finished_at: 130,
      state: 'succeeded'
    });
    expect(elapsedSeconds(done, 9999)).toBe(30);
    expect(elapsedSeconds(makeJob({ started_at: null }), 10)).toBeNull();
  });

  it('computes the cost from the hourly price', () => {
    const job = makeJob({ started_at: 0, hourly_price: 0.36, backend: 'ec2' });
    expect(costSoFar(job, 3600)).toBeCloseTo(0.36);
    expect(costSoFar(job, 1800)).toBeCloseTo(0.18);
    expect(costSoFar(makeJob(), 100)).toBeNull();
  });

  it('formats durations, costs and prices', () => {
    expect(formatDuration(5)).toBe('0:05');
    expect(formatDuration(125)).toBe('2:05');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(null)).toBe('');
    expect(formatCost(0.01234)).toBe('$0.0123');
    expect(formatCost(12.345)).toBe('$12.35');
    expect(formatCost(null)).toBe('');
    expect(formatPrice(0.0832)).toBe('$0.0832/h');
  });
});

describe('paths', () => {
  const EXTENSIONS = makeConfig().extensions;

  it('knows the supported files', () => {
    for (const p of [
      'a.ipynb',
      'dir/b.py',
      'c.R',
      'd.Rmd',
      'e.qmd',
      'f.sh',
      'G.PY'
    ]) {
      expect(isSupportedPath(p, EXTENSIONS)).toBe(true);
    }
    for (const p of ['a.txt', 'Makefile', 'dir.py/readme', '.py']) {
      expect(isSupportedPath(p, EXTENSIONS)).toBe(false);
    }
    expect(extensionOf('x/y.tar.gz')).toBe('.gz');
    // A file type added on the server needs no front-end change.
    expect(isSupportedPath('a.jl', EXTENSIONS)).toBe(false);
    expect(isSupportedPath('a.jl', [...EXTENSIONS, '.jl'])).toBe(true);
    expect(isNotebookPath('x/a.ipynb')).toBe(true);
    expect(isNotebookPath('x/a.py')).toBe(false);
  });

  it('shows the default log path beside the script', () => {
    expect(defaultLogPathHint('work/train.py')).toBe('work/train.<job id>.log');
    expect(defaultLogPathHint('train.ipynb', 'abc')).toBe('train.abc.log');
  });

  it('sorts newest first', () => {
    const jobs = [
      makeJob({ id: 'a', created_at: 1 }),
      makeJob({ id: 'b', created_at: 3 }),
      makeJob({ id: 'c', created_at: 2 })
    ];
    expect(jobs.sort(compareNewestFirst).map(j => j.id)).toEqual([
      'b',
      'c',
      'a'
    ]);
  });
});
