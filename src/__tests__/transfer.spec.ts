/**
 * S3 storage (issue 13): the panel's "uploading inputs 120 MB of 340 MB" and
 * "downloading outputs 3 files", in the row and the details, and the notes of
 * an output kept beside a file the user changed.
 */
import { nullTranslator } from '@jupyterlab/translation';

import type { IJob, ITransferProgress } from '../tokens';
import { formatBytes, transferText } from '../transfer';
import { makeConfig, makeJob, mockServer } from './fixtures';
import { usePanel } from './panel';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function progress(overrides: Partial<ITransferProgress>): ITransferProgress {
  return {
    phase: 'uploading_inputs',
    bytes_done: 120_000_000,
    bytes_total: 340_000_000,
    files_done: 10,
    files_total: 40,
    ...overrides
  };
}

describe('transfer words', () => {
  it('formats sizes in decimal units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1500)).toBe('1.5 kB');
    expect(formatBytes(120_000_000)).toBe('120 MB');
    expect(formatBytes(2_400_000_000)).toBe('2.4 GB');
  });

  it('says how far an upload or a download got, and nothing when idle', () => {
    expect(transferText(progress({}), trans)).toBe(
      'uploading inputs 120 MB of 340 MB'
    );
    const down = progress({ phase: 'downloading_outputs', files_total: 3 });
    expect(transferText(down, trans)).toBe('downloading outputs 3 files');
    const one = progress({ phase: 'downloading_outputs', files_total: 1 });
    expect(transferText(one, trans)).toBe('downloading outputs 1 file');
    expect(transferText(null, trans)).toBeNull();
    expect(transferText(undefined, trans)).toBeNull();
  });
});

describe('the Jobs panel', () => {
  const t = usePanel();

  function serve(job: IJob) {
    t.server = mockServer({
      'GET config': { status: 200, body: makeConfig() },
      'GET jobs': { status: 200, body: { jobs: [job], next_cursor: null } },
      [`GET jobs/${job.id}/log`]: {
        status: 200,
        body: {
          content: '',
          offset: 0,
          next_offset: 0,
          size: 0,
          eof: true,
          complete: false
        }
      }
    });
  }

  it('shows an upload in the row and the details', async () => {
    const job = makeJob({
      id: 'cccccccccccccccc',
      backend: 'ec2',
      state: 'launching',
      storage: 's3',
      progress: progress({})
    });
    serve(job);
    const { model, panel } = await t.open();
    const row = panel.node.querySelector('.jp-AWSJobs-transfer');
    expect(row?.textContent).toBe('uploading inputs 120 MB of 340 MB');
    model.select(job.id);
    await sleep(200);
    const details = panel.node.querySelector('.jp-AWSJobs-details');
    expect(
      details?.querySelector('[data-field="progress"]')?.textContent
    ).toContain('uploading inputs 120 MB of 340 MB');
  });

  it('shows the notes of a finished job and no transfer', async () => {
    const note =
      "report.ipynb changed since the job started: the job's version is " +
      'report.dddddddddddddddd.ipynb';
    const job = makeJob({
      id: 'dddddddddddddddd',
      backend: 'ec2',
      state: 'succeeded',
      storage: 's3',
      progress: null,
      notes: [note]
    });
    serve(job);
    const { model, panel } = await t.open();
    expect(panel.node.querySelector('.jp-AWSJobs-transfer')).toBeNull();
    model.select(job.id);
    await sleep(200);
    const details = panel.node.querySelector('.jp-AWSJobs-details');
    expect(
      details?.querySelector('[data-field="notes"]')?.textContent
    ).toContain(note);
  });
});
