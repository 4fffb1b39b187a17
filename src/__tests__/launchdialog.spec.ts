import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import type { IBackendInfo, IInstanceQuery, IJobsModel } from '../tokens';
import type { ILaunchForm } from '../validation';
import { LaunchDialogBody } from '../widgets/LaunchDialog';
import { EC2, LOCAL, makeBackend, makeForm } from './fixtures';

const trans = nullTranslator.load('awsjobs_lab');
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function fakeModel(queries: IInstanceQuery[]): IJobsModel {
  return {
    instanceTypes: async (query: IInstanceQuery) => {
      queries.push(query);
      if (query.memory_gib > 1000) {
        throw new Error('no instance type has 2000 GiB');
      }
      return {
        choice: {
          instance_type: 'm6i.large',
          vcpus: 2,
          memory_gib: 8,
          hourly_price: 0.04,
          spot: query.spot,
          availability_zone: 'us-east-1a'
        },
        candidates: [],
        tried: {
          types: [
            'm6i.large',
            ...Array.from({ length: 9 }, (_, i) => `t${i}.x`)
          ],
          zones: ['us-east-1a', 'us-east-1b', 'us-east-1c'],
          pools: 30,
          strategy: query.spot ? 'price-capacity-optimized' : 'lowest-price',
          spot: query.spot,
          from_price: 0.061
        }
      };
    }
  } as unknown as IJobsModel;
}

/** Type into an input as a person would (React listens to `input`). */
function type(input: HTMLInputElement, value: string): void {
  const setter = Object.getOwnPropertyDescriptor(
    HTMLInputElement.prototype,
    'value'
  )?.set;
  setter?.call(input, value);
  input.dispatchEvent(new Event('input', { bubbles: true }));
}

async function render(body: LaunchDialogBody): Promise<void> {
  body.update();
  await sleep(50);
}

describe('LaunchDialogBody', () => {
  let body: LaunchDialogBody | null = null;
  afterEach(() => {
    body?.dispose();
    body = null;
  });

  const create = (
    queries: IInstanceQuery[],
    form: Partial<ILaunchForm> = {},
    backends: IBackendInfo[] = [LOCAL, EC2]
  ) => {
    body = new LaunchDialogBody({
      form: makeForm({ memoryGib: '8', ...form }),
      context: {
        path: 'work/a.ipynb',
        isNotebook: true,
        backends,
        limits: { memory_gib: 24576, cpus: 448, max_lifetime_minutes: 1440 }
      },
      model: fakeModel(queries),
      trans
    });
    Widget.attach(body, document.body);
    return body;
  };

  it('previews the EC2 instance and its price, debounced', async () => {
    const queries: IInstanceQuery[] = [];
    const b = create(queries);
    await render(b);
    const memory = b.node.querySelector(
      'input[name="memoryGib"]'
    ) as HTMLInputElement;
    type(memory, '16');
    type(memory, '32');
    await sleep(700);
    await render(b);
    // Only the last value was asked for.
    expect(queries).toEqual([
      { memory_gib: 32, cpus: 2, spot: true, instance_type: undefined }
    ]);
    const preview = b.node.querySelector('.jp-AWSJobs-preview');
    expect(preview?.textContent).toContain('m6i.large');
    expect(preview?.textContent).toContain('$0.0400/h');
    expect(preview?.textContent).toContain('spot');
    // What one launch will try: EC2 Fleet chooses among these pools.
    expect(preview?.querySelector('[data-field="offer"]')?.textContent).toBe(
      'Tries m6i.large or 9 similar types, 3 zones, from $0.061/h spot'
    );
  });

  it("shows the server's refusal of the numbers in the preview", async () => {
    const queries: IInstanceQuery[] = [];
    const b = create(queries, { memoryGib: '2000' });
    await sleep(700);
    await render(b);
    expect(b.node.querySelector('.jp-AWSJobs-preview')?.textContent).toContain(
      'no instance type has 2000 GiB'
    );
  });

  it('shows invalid values inline and returns the raw form', async () => {
    const b = create([], { backend: 'local' });
    await render(b);
    // No EC2 preview or spot for the local backend; parameters for a notebook.
    expect(b.node.querySelector('.jp-AWSJobs-preview')).toBeNull();
    expect(b.node.querySelector('input[name="spot"]')).toBeNull();
    expect(b.node.querySelector('textarea[name="parameters"]')).not.toBeNull();
    const memory = b.node.querySelector(
      'input[name="memoryGib"]'
    ) as HTMLInputElement;
    type(memory, '0');
    await render(b);
    const error = b.node.querySelector(
      '.jp-AWSJobs-fieldError[data-field="memoryGib"]'
    );
    expect(error?.textContent).toBe('Memory must be a number of GiB above 0');
    expect(b.errors.memoryGib).toBeTruthy();
    expect(b.getValue().memoryGib).toBe('0');
    // Untouched fields show no error yet.
    expect(b.node.querySelectorAll('.jp-AWSJobs-fieldError')).toHaveLength(1);
  });

  it('shows the fields a backend declares, whatever its id', async () => {
    // A backend the front end has never heard of: spot only, no preview.
    const gpu = makeBackend('gpu', {
      label: 'GPU pool',
      capabilities: { spot: true }
    });
    const queries: IInstanceQuery[] = [];
    const b = create(queries, { backend: 'gpu' }, [LOCAL, gpu]);
    await sleep(700);
    await render(b);
    expect(b.node.querySelector('input[name="spot"]')).not.toBeNull();
    expect(b.node.querySelector('input[name="instanceType"]')).toBeNull();
    expect(b.node.querySelector('.jp-AWSJobs-preview')).toBeNull();
    expect(queries).toEqual([]);
    const options = b.node.querySelectorAll('select[name="backend"] option');
    expect(Array.from(options).map(o => o.textContent)).toEqual([
      'This machine',
      'GPU pool'
    ]);
  });

  it("caps the lifetime field at the backend's own limit", async () => {
    const capped = makeBackend('capped', { max_lifetime_minutes: 720 });
    const b = create([], { backend: 'capped' }, [LOCAL, capped]);
    await render(b);
    const lifetime = () =>
      b.node.querySelector(
        'input[name="maxLifetimeMinutes"]'
      ) as HTMLInputElement;
    expect(lifetime().max).toBe('720');
    expect(lifetime().title).toBe('At most 720 minutes here');
    type(lifetime(), '721');
    await render(b);
    expect(
      b.node.querySelector(
        '.jp-AWSJobs-fieldError[data-field="maxLifetimeMinutes"]'
      )?.textContent
    ).toBe('Maximum lifetime must be at most 720 minutes');
  });
});
