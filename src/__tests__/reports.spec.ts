/**
 * Issue 16 in the front end: script arguments (one per line) and report
 * parameters in the launch form, kept by Re-run; a rendered HTML report
 * opened in JupyterLab's HTML viewer.
 */
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { outputViewer } from '../commands/job';
import { isReportPath } from '../format';
import type { IJob, IJobsModel } from '../tokens';
import {
  formFromJob,
  ILaunchContext,
  MAX_ARGS,
  parseArgs,
  validateLaunch
} from '../validation';
import { LaunchDialogBody } from '../widgets/LaunchDialog';
import { LOCAL, makeForm } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');
const LIMITS = { memory_gib: 24576, cpus: 448, max_lifetime_minutes: 1440 };

function context(path: string): ILaunchContext {
  return {
    path,
    isNotebook: path.endsWith('.ipynb'),
    isReport: isReportPath(path),
    backends: [LOCAL],
    limits: LIMITS
  };
}

describe('script arguments', () => {
  it('are one per line, taken as typed, blank lines skipped', () => {
    const text = '--epochs\n10\r\n\nwith space\n$(whoami) "q" \'s\'\n';
    expect(parseArgs(text, trans)).toEqual({
      args: ['--epochs', '10', 'with space', '$(whoami) "q" \'s\''],
      error: null
    });
    expect(parseArgs('', trans)).toEqual({ args: [], error: null });
  });

  it('are limited in number and size', () => {
    const many = Array.from({ length: MAX_ARGS + 1 }, () => 'x').join('\n');
    expect(parseArgs(many, trans).error).toBe('At most 256 arguments');
    expect(parseArgs('x'.repeat(64 * 1024), trans).error).toBe(
      'At most 64 KiB of arguments'
    );
  });

  it('are sent for a script, never for a notebook or a report', () => {
    const form = makeForm({ backend: 'local', args: '--epochs\n10' });
    expect(
      validateLaunch(form, context('train.py'), trans).request?.args
    ).toEqual(['--epochs', '10']);
    for (const path of ['a.ipynb', 'r.Rmd', 'q.qmd']) {
      const request = validateLaunch(form, context(path), trans).request;
      expect(request).not.toBeNull();
      expect(request?.args).toBeUndefined();
    }
    const none = validateLaunch(
      makeForm({ backend: 'local' }),
      context('t.sh'),
      trans
    );
    expect(none.request?.args).toBeUndefined();
  });

  it('show their error on the field', () => {
    const many = Array.from({ length: 300 }, () => 'x').join('\n');
    const form = makeForm({ backend: 'local', args: many });
    const result = validateLaunch(form, context('t.R'), trans);
    expect(result.request).toBeNull();
    expect(result.errors.args).toBe('At most 256 arguments');
  });

  it('are kept by Re-run', () => {
    const job = {
      args: ['--name', 'run 1'],
      parameters: {}
    } as unknown as IJob;
    expect(formFromJob(job).args).toBe('--name\nrun 1');
    expect(formFromJob({ parameters: {} } as unknown as IJob).args).toBe('');
  });
});

describe('report parameters', () => {
  it('are sent for .Rmd and .qmd files', () => {
    const form = makeForm({ backend: 'local', parameters: '{"n": 7}' });
    for (const path of ['r.Rmd', 'r.rmd', 'q.qmd']) {
      expect(
        validateLaunch(form, context(path), trans).request?.parameters
      ).toEqual({ n: 7 });
    }
    expect(
      validateLaunch(form, context('x.R'), trans).request?.parameters
    ).toBeUndefined();
  });
});

describe('the launch dialog', () => {
  let body: LaunchDialogBody | null = null;
  afterEach(() => {
    body?.dispose();
    body = null;
  });

  async function open(path: string): Promise<LaunchDialogBody> {
    body = new LaunchDialogBody({
      form: makeForm({ backend: 'local', args: 'a b\nc' }),
      context: context(path),
      model: {} as IJobsModel,
      trans
    });
    Widget.attach(body, document.body);
    body.update();
    await new Promise(resolve => setTimeout(resolve, 50));
    return body;
  }

  it('has an Arguments field for a script', async () => {
    const b = await open('train.py');
    const args = b.node.querySelector(
      'textarea[name="args"]'
    ) as HTMLTextAreaElement;
    expect(args.value).toBe('a b\nc');
    expect(args.closest('label')?.textContent).toContain('Arguments');
    expect(b.node.querySelector('textarea[name="parameters"]')).toBeNull();
  });

  it('has report parameters and no Arguments for a report', async () => {
    const b = await open('report.Rmd');
    const params = b.node.querySelector('textarea[name="parameters"]');
    expect(params?.closest('label')?.textContent).toContain(
      'Report parameters'
    );
    expect(b.node.querySelector('textarea[name="args"]')).toBeNull();
  });
});

describe('Open output', () => {
  it('opens a rendered HTML report in the HTML viewer', () => {
    expect(outputViewer('r/report.0123456789abcdef.html')).toBe('HTML Viewer');
    expect(outputViewer('r/REPORT.HTM')).toBe('HTML Viewer');
    expect(outputViewer('r/report.0123456789abcdef.pdf')).toBeUndefined();
    expect(outputViewer('nb/a.0123456789abcdef.ipynb')).toBeUndefined();
  });
});
