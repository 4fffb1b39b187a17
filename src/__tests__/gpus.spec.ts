/**
 * GPUs in the launch flow (issue 12): the dialog's fields on a backend with
 * the `gpus` capability, their validation into the request, the preview's
 * query and GPU facts, and Re-run keeping them.
 */
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import type { IBackendInfo, IInstanceQuery, IJobsModel } from '../tokens';
import { formFromJob, ILaunchContext, validateLaunch } from '../validation';
import { LaunchDialogBody } from '../widgets/LaunchDialog';
import { CHOICE, EC2, LOCAL, makeForm, makeJob } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

const context = (backends: IBackendInfo[] = [LOCAL, EC2]): ILaunchContext => ({
  path: 'work/train.py',
  isNotebook: false,
  backends,
  limits: { memory_gib: 0, cpus: 0, max_lifetime_minutes: 0 }
});

describe('GPU fields: validation', () => {
  it('sends the GPU fields to a backend with the capability', () => {
    const form = makeForm({ gpus: '1', gpuMemoryGib: '22', gpuModel: 'A10G' });
    const { errors, request } = validateLaunch(form, context(), trans);
    expect(errors).toEqual({});
    expect(request).toMatchObject({
      gpus: 1,
      gpu_memory_gib: 22,
      gpu_model: 'A10G'
    });
  });

  it('sends nothing of GPUs when none is asked for, or to another backend', () => {
    const none = validateLaunch(makeForm(), context(), trans).request;
    expect(none).not.toHaveProperty('gpus');
    const local = validateLaunch(
      makeForm({ backend: 'local', gpus: '2', gpuModel: 'T4' }),
      context(),
      trans
    ).request;
    expect(local).not.toHaveProperty('gpus');
    expect(local).not.toHaveProperty('gpu_model');
  });

  it.each([
    [{ gpus: '1.5' }, 'gpus', 'A whole number from 0 to 16'],
    [{ gpus: '17' }, 'gpus', 'A whole number from 0 to 16'],
    [{ gpus: '-1' }, 'gpus', 'A whole number from 0 to 16'],
    [{ gpuMemoryGib: '-2' }, 'gpuMemoryGib', 'A number of GiB, 0 or more'],
    [{ gpuModel: 'A10G; rm' }, 'gpuModel', 'A GPU name like T4, A10G or L4']
  ])('refuses %p', (overrides, field, message) => {
    const form = makeForm({ gpus: '1', ...overrides });
    const { errors, request } = validateLaunch(form, context(), trans);
    expect(request).toBeNull();
    expect(errors).toEqual({ [field]: message });
  });

  it('Re-run keeps the GPU fields', () => {
    const job = makeJob({ gpus: 2, gpu_memory_gib: 22, gpu_model: 'L4' });
    expect(formFromJob(job)).toMatchObject({
      gpus: '2',
      gpuMemoryGib: '22',
      gpuModel: 'L4'
    });
    expect(formFromJob(makeJob())).toMatchObject({
      gpus: '0',
      gpuMemoryGib: '',
      gpuModel: ''
    });
  });
});

describe('GPU fields: the dialog', () => {
  let body: LaunchDialogBody | null = null;
  afterEach(() => {
    body?.dispose();
    body = null;
  });

  const open = (queries: IInstanceQuery[], backend: string) => {
    const model = {
      instanceTypes: async (query: IInstanceQuery) => {
        queries.push(query);
        const gpu = { gpus: 1, gpu_model: 'L4', gpu_memory_gib: 22.352 };
        return {
          choice: { ...CHOICE, instance_type: 'g6.xlarge', ...gpu },
          candidates: []
        };
      }
    } as unknown as IJobsModel;
    body = new LaunchDialogBody({
      form: makeForm({ backend, gpus: '1', gpuModel: 'L4' }),
      context: context(),
      model,
      trans
    });
    Widget.attach(body, document.body);
    body.update();
    return body;
  };

  it('shows the fields, previews with them and shows the GPU facts', async () => {
    const queries: IInstanceQuery[] = [];
    const b = open(queries, 'ec2');
    await sleep(50);
    const names = ['gpus', 'gpuMemoryGib', 'gpuModel'];
    for (const name of names) {
      expect(b.node.querySelector(`input[name="${name}"]`)).not.toBeNull();
    }
    const gpus = b.node.querySelector('input[name="gpus"]') as HTMLInputElement;
    const setter = Object.getOwnPropertyDescriptor(
      HTMLInputElement.prototype,
      'value'
    )?.set;
    setter?.call(gpus, '2');
    gpus.dispatchEvent(new Event('input', { bubbles: true }));
    await sleep(700);
    b.update();
    await sleep(50);
    expect(queries[queries.length - 1]).toMatchObject({
      gpus: 2,
      gpu_model: 'L4'
    });
    const facts = b.node.querySelector('[data-field="gpus"]');
    expect(facts?.textContent).toContain('1 × L4 GPU, 22.352 GiB each');
    expect(b.getValue()).toMatchObject({ gpus: '2', gpuModel: 'L4' });
  });

  it('has no GPU fields on a backend without the capability', async () => {
    const b = open([], 'local');
    await sleep(50);
    expect(b.node.querySelector('input[name="gpus"]')).toBeNull();
  });
});
