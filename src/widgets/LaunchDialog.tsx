import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Debouncer } from '@lumino/polling';
import type { Message } from '@lumino/messaging';
import * as React from 'react';

import { backendCan } from '../backends';
import {
  defaultLogPathHint,
  formatPrice,
  ILaunchOffer,
  offerSentence
} from '../format';
import { errorText } from '../handler';
import { ScheduleChoice } from '../schedules/choice';
import type { IScheduleForm, ScheduleFields } from '../schedules/form';
import type { ISchedulesModel } from '../schedules/tokens';
import type {
  BackendCapability,
  IBackendInfo,
  IInstanceChoice,
  IInstanceQuery,
  IInstanceTypes,
  IJobsModel,
  ILaunchRequest,
  IServerLimits,
  OnInterruption
} from '../tokens';
import { MAX_ATTEMPTS_LIMIT, MAX_GPUS, ON_INTERRUPTION } from '../tokens';
import {
  ILaunchContext,
  ILaunchForm,
  LaunchErrors,
  LaunchField,
  limitsFor,
  validateGpus,
  validateLaunch
} from '../validation';

/** The preview of the instance the server would choose. */
export interface IPreview {
  loading: boolean;
  choice: IInstanceChoice | null;
  error: string | null;
  /** What one launch will try (EC2 Fleet's pools), when the server says. */
  offer?: ILaunchOffer | null;
}

/** `GET instance-types` with what one launch will try (servers that say it). */
type IPreviewAnswer = IInstanceTypes & { tried?: ILaunchOffer };

type FieldElement = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** The fields typed into an `<input>` (all but the backend, spot and text areas). */
type InputField = Exclude<
  LaunchField,
  'backend' | 'spot' | 'parameters' | 'args' | 'env' | 'onInterruption'
>;

/** Per-field helpers of the form (see `LaunchDialogBody._fieldHelpers`). */
interface IFieldHelpers {
  set: (field: LaunchField) => (event: React.ChangeEvent<FieldElement>) => void;
  error: (field: LaunchField) => JSX.Element | null;
  className: (field: LaunchField) => string;
}

export namespace LaunchDialogBody {
  export interface IOptions {
    form: ILaunchForm;
    /** The file, whether it is a notebook, the backends and the limits. */
    context: ILaunchContext;
    model: IJobsModel;
    trans: TranslationBundle;
    /** Show every field's error at once (after a refused submit). */
    showAllErrors?: boolean;
    /** An error answered by the server for the last submit. */
    serverError?: string | null;
    /** "Run now" / "On a schedule", with these schedule fields (none: run now only). */
    schedule?: { form: IScheduleForm; model: ISchedulesModel };
  }
}

/** The launch dialog's body: a form whose `getValue()` is the raw form. */
export class LaunchDialogBody extends ReactWidget {
  constructor(options: LaunchDialogBody.IOptions) {
    super();
    this.addClass('jp-AWSJobs-launch');
    this._options = options;
    this._form = { ...options.form };
    this._showAll = !!options.showAllErrors;
    this.scheduleChoice = options.schedule
      ? new ScheduleChoice({
          ...options.schedule,
          trans: options.trans,
          missedRunGraceMinutes:
            options.model.config?.schedules?.missed_run_grace_minutes ?? null,
          onUpdate: () => this.update()
        })
      : null;
    this._previewDebouncer = new Debouncer(() => this._loadPreview(), 400);
    this._schedulePreview();
  }

  getValue(): ILaunchForm {
    return { ...this._form };
  }

  /** The current validation errors. */
  get errors(): LaunchErrors {
    return validateLaunch(
      this._form,
      this._options.context,
      this._options.trans
    ).errors;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._previewDebouncer.dispose();
    super.dispose();
  }

  protected onUpdateRequest(msg: Message): void {
    super.onUpdateRequest(msg);
    this._syncAcceptButton();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._syncAcceptButton();
  }

  render(): JSX.Element {
    const { context } = this._options;
    const field = this._fieldHelpers();
    const can = (capability: BackendCapability) =>
      backendCan(context.backends, this._form.backend, capability);
    return (
      <form
        className="jp-AWSJobs-launchForm"
        data-show-all={this._showAll ? 'true' : 'false'}
        onSubmit={event => event.preventDefault()}
      >
        {this._options.serverError && (
          <div className="jp-AWSJobs-serverError" role="alert">
            {this._options.serverError}
          </div>
        )}
        <div className="jp-AWSJobs-launchPath" title={context.path}>
          {context.path}
        </div>
        {this.scheduleChoice?.render(
          context.backends.find(b => b.id === this._form.backend),
          this._showAll
        )}
        {this._renderBackend(field)}
        {this._renderNumbers(field)}
        {can('gpus') && this._renderGpus(field)}
        {(can('spot') || can('instance_types')) &&
          this._renderMachine(field, can('spot'), can('instance_types'))}
        {this._renderTexts(field)}
      </form>
    );
  }

  /** What every field needs: its change handler, error line and class. */
  private _fieldHelpers(): IFieldHelpers {
    const errors = this.errors;
    const shown = (field: LaunchField): string | undefined =>
      this._showAll || this._touched.has(field) ? errors[field] : undefined;
    return {
      set: field => event => {
        const target = event.target;
        const value =
          target instanceof HTMLInputElement && target.type === 'checkbox'
            ? target.checked
            : target.value;
        this._form = { ...this._form, [field]: value };
        this._touched.add(field);
        this._schedulePreview();
        this.update();
      },
      error: field => {
        const message = shown(field);
        return message ? (
          <div
            className="jp-AWSJobs-fieldError"
            data-field={field}
            role="alert"
          >
            {message}
          </div>
        ) : null;
      },
      className: field =>
        shown(field) ? 'jp-mod-styled jp-AWSJobs-invalid' : 'jp-mod-styled'
    };
  }

  private _renderBackend(field: IFieldHelpers): JSX.Element {
    const { trans, context } = this._options;
    return (
      <>
        <label className="jp-AWSJobs-field">
          <span>{trans.__('Backend')}</span>
          <select
            name="backend"
            className={field.className('backend')}
            value={this._form.backend}
            onChange={field.set('backend')}
          >
            {context.backends.map(b => (
              <option key={b.id} value={b.id}>
                {b.label}
              </option>
            ))}
          </select>
        </label>
        {field.error('backend')}
      </>
    );
  }

  private _renderNumbers(field: IFieldHelpers): JSX.Element {
    const { trans, context } = this._options;
    const backend = context.backends.find(b => b.id === this._form.backend);
    const maxLifetime = limitsFor(context.limits, backend).max_lifetime_minutes;
    return (
      <>
        <div className="jp-AWSJobs-fieldRow">
          {this._input(field, 'memoryGib', trans.__('Memory (GiB)'), {
            type: 'number',
            min: '0',
            step: 'any'
          })}
          {this._input(field, 'cpus', trans.__('CPUs'), {
            type: 'number',
            min: '1',
            step: '1'
          })}
          {this._input(
            field,
            'maxLifetimeMinutes',
            trans.__('Max lifetime (min)'),
            {
              type: 'number',
              min: '1',
              step: '1',
              max: maxLifetime > 0 ? String(maxLifetime) : undefined,
              title:
                maxLifetime > 0
                  ? trans.__('At most %1 minutes here', maxLifetime)
                  : undefined
            }
          )}
        </div>
        {field.error('memoryGib')}
        {field.error('cpus')}
        {field.error('maxLifetimeMinutes')}
      </>
    );
  }

  /** A labelled input of one text or number field of the form. */
  private _input(
    field: IFieldHelpers,
    name: InputField,
    label: string,
    attributes: React.InputHTMLAttributes<HTMLInputElement>
  ): JSX.Element {
    return (
      <label className="jp-AWSJobs-field">
        <span>{label}</span>
        <input
          name={name}
          {...attributes}
          className={field.className(name)}
          value={this._form[name]}
          onChange={field.set(name)}
        />
      </label>
    );
  }

  /** Spot and instance type, for a backend that declares them. */
  private _renderMachine(
    field: IFieldHelpers,
    spot: boolean,
    instanceTypes: boolean
  ): JSX.Element {
    const { trans } = this._options;
    const form = this._form;
    return (
      <>
        <div className="jp-AWSJobs-fieldRow">
          {spot && (
            <label className="jp-AWSJobs-field jp-AWSJobs-checkbox">
              <input
                name="spot"
                type="checkbox"
                checked={form.spot}
                onChange={field.set('spot')}
              />
              <span>{trans.__('Spot instance')}</span>
            </label>
          )}
          {instanceTypes &&
            this._input(
              field,
              'instanceType',
              trans.__('Instance type (optional)'),
              { type: 'text', placeholder: trans.__('cheapest that fits') }
            )}
        </div>
        {instanceTypes && field.error('instanceType')}
        {spot && form.spot && this._renderRecovery(field)}
        {instanceTypes && this._renderPreview()}
      </>
    );
  }

  /** GPUs: how many, memory per GPU, model (a backend with `gpus`). */
  private _renderGpus(field: IFieldHelpers): JSX.Element {
    const { trans } = this._options;
    return (
      <>
        <div className="jp-AWSJobs-fieldRow jp-AWSJobs-gpus">
          {this._input(field, 'gpus', trans.__('GPUs'), {
            type: 'number',
            min: '0',
            max: String(MAX_GPUS),
            step: '1'
          })}
          {this._input(field, 'gpuMemoryGib', trans.__('GiB per GPU'), {
            type: 'number',
            min: '0',
            step: 'any',
            placeholder: trans.__('any')
          })}
          {this._input(field, 'gpuModel', trans.__('GPU model'), {
            type: 'text',
            placeholder: trans.__('any (T4, A10G, L4…)')
          })}
        </div>
        {field.error('gpus')}
        {field.error('gpuMemoryGib')}
        {field.error('gpuModel')}
      </>
    );
  }

  /** What a spot interruption does, and the attempts in all (spot on only). */
  private _renderRecovery(field: IFieldHelpers): JSX.Element {
    const { trans } = this._options;
    const labels: { [value in OnInterruption]: string } = {
      retry: trans.__('Retry on spot, the last attempt on-demand'),
      on_demand: trans.__('Retry on on-demand'),
      fail: trans.__('Fail')
    };
    return (
      <>
        <div className="jp-AWSJobs-fieldRow jp-AWSJobs-recovery">
          <label className="jp-AWSJobs-field">
            <span>{trans.__('If AWS reclaims the instance')}</span>
            <select
              name="onInterruption"
              className={field.className('onInterruption')}
              value={this._form.onInterruption}
              onChange={field.set('onInterruption')}
            >
              {ON_INTERRUPTION.map(value => (
                <option key={value} value={value}>
                  {labels[value]}
                </option>
              ))}
            </select>
          </label>
          {this._input(field, 'maxAttempts', trans.__('Attempts'), {
            type: 'number',
            min: '1',
            max: String(MAX_ATTEMPTS_LIMIT),
            step: '1'
          })}
        </div>
        {field.error('maxAttempts')}
      </>
    );
  }

  /** Log path, parameters (notebooks, reports) or arguments (scripts), environment. */
  private _renderTexts(field: IFieldHelpers): JSX.Element {
    const { trans, context } = this._options;
    const form = this._form;
    return (
      <>
        {this._input(field, 'logPath', trans.__('Log file'), {
          type: 'text',
          placeholder: defaultLogPathHint(context.path)
        })}
        {field.error('logPath')}
        {context.isNotebook || context.isReport ? (
          <>
            <label className="jp-AWSJobs-field">
              <span>
                {context.isReport
                  ? trans.__(
                      'Report parameters (JSON object; names from its params)'
                    )
                  : trans.__('Notebook parameters (JSON object)')}
              </span>
              <textarea
                name="parameters"
                rows={3}
                className={field.className('parameters')}
                placeholder={trans.__('{"alpha": 0.5}')}
                value={form.parameters}
                onChange={field.set('parameters')}
              />
            </label>
            {field.error('parameters')}
          </>
        ) : (
          <>
            <label className="jp-AWSJobs-field">
              <span>
                {trans.__('Arguments (one per line, taken as typed)')}
              </span>
              <textarea
                name="args"
                rows={2}
                className={field.className('args')}
                placeholder={trans.__('--epochs\n10')}
                value={form.args}
                onChange={field.set('args')}
              />
            </label>
            {field.error('args')}
          </>
        )}
        <label className="jp-AWSJobs-field">
          <span>{trans.__('Environment variables (NAME=value per line)')}</span>
          <textarea
            name="env"
            rows={2}
            className={field.className('env')}
            placeholder={trans.__('SEED=42')}
            value={form.env}
            onChange={field.set('env')}
          />
        </label>
        {field.error('env')}
      </>
    );
  }

  private _renderPreview(): JSX.Element {
    const { trans } = this._options;
    const preview = this._preview;
    let content: React.ReactNode;
    if (preview.error) {
      content = <span className="jp-AWSJobs-errorText">{preview.error}</span>;
    } else if (preview.choice) {
      const c = preview.choice;
      content = (
        <>
          {trans.__('Will launch')}{' '}
          <strong data-field="instance_type">{c.instance_type}</strong>{' '}
          {trans.__('(%1 vCPU, %2 GiB)', c.vcpus, c.memory_gib)}{' '}
          {c.gpus ? (
            <span data-field="gpus">
              {trans.__(
                '%1 × %2 GPU, %3 GiB each',
                c.gpus,
                c.gpu_model ?? '',
                c.gpu_memory_gib ?? 0
              )}{' '}
            </span>
          ) : null}
          {c.hourly_price !== null && (
            <strong data-field="hourly_price">
              {formatPrice(c.hourly_price)}
            </strong>
          )}{' '}
          {c.spot ? trans.__('spot') : trans.__('on-demand')}
          {c.availability_zone ? ` · ${c.availability_zone}` : ''}
          {c.hourly_price === null
            ? ` · ${trans.__('price unknown')}`
            : c.price_source
              ? ` · ${trans.__('price: %1', c.price_source)}`
              : ''}
          {preview.offer && (
            <div data-field="offer">
              {trans.__('Tries %1', offerSentence(preview.offer, trans))}
            </div>
          )}
        </>
      );
    } else if (preview.loading) {
      content = trans.__('Finding the cheapest instance…');
    } else {
      content = trans.__('Enter valid memory and CPUs to see the price.');
    }
    return (
      <div
        className="jp-AWSJobs-preview"
        data-loading={preview.loading ? 'true' : 'false'}
      >
        {content}
      </div>
    );
  }

  /** Whether the chosen backend previews the instance it would launch. */
  private get _previews(): boolean {
    const { context } = this._options;
    return backendCan(context.backends, this._form.backend, 'instance_types');
  }

  private _schedulePreview(): void {
    if (!this._previews) {
      return;
    }
    void this._previewDebouncer.invoke();
  }

  private async _loadPreview(): Promise<void> {
    const form = this._form;
    const errors = this.errors;
    if (
      !this._previews ||
      errors.memoryGib ||
      errors.cpus ||
      errors.instanceType ||
      errors.gpus ||
      errors.gpuMemoryGib ||
      errors.gpuModel
    ) {
      this._preview = { loading: false, choice: null, error: null };
      this.update();
      return;
    }
    const serial = ++this._previewSerial;
    this._preview = { ...this._preview, loading: true };
    this.update();
    try {
      const answer: IPreviewAnswer = await this._options.model.instanceTypes({
        memory_gib: Number(form.memoryGib),
        cpus: Number(form.cpus),
        spot: form.spot,
        instance_type: form.instanceType.trim() || undefined,
        ...this._gpuQuery()
      });
      if (serial !== this._previewSerial || this.isDisposed) {
        return;
      }
      this._preview = {
        loading: false,
        choice: answer.choice,
        error: null,
        offer: answer.tried ?? null
      };
    } catch (reason) {
      if (serial !== this._previewSerial || this.isDisposed) {
        return;
      }
      this._preview = {
        loading: false,
        choice: null,
        error: errorText(reason)
      };
    }
    this.update();
  }

  /** The preview's GPU fields: as a launch would send them. */
  private _gpuQuery(): Partial<IInstanceQuery> {
    const { context, trans } = this._options;
    if (!backendCan(context.backends, this._form.backend, 'gpus')) {
      return {};
    }
    return validateGpus(this._form, {}, trans);
  }

  /** Disable the dialog's Launch button while the form is invalid. */
  private _syncAcceptButton(): void {
    const dialog = this.node.closest('.jp-Dialog-content');
    dialog?.classList.add('jp-AWSJobs-launchDialog');
    const button = dialog?.querySelector<HTMLButtonElement>(
      'button.jp-mod-accept'
    );
    if (button) {
      button.disabled =
        Object.keys(this.errors).length > 0 ||
        !!this.scheduleChoice?.blocksAccept;
      const label = button.querySelector('.jp-Dialog-buttonLabel');
      if (label && this.scheduleChoice) {
        label.textContent = this.scheduleChoice.acceptLabel(
          this._options.trans.__('Launch')
        );
      }
    }
  }

  /** The schedule part, when the dialog offers "On a schedule". */
  readonly scheduleChoice: ScheduleChoice | null;
  private _options: LaunchDialogBody.IOptions;
  private _form: ILaunchForm;
  private _touched = new Set<LaunchField>();
  private _showAll: boolean;
  private _preview: IPreview = { loading: false, choice: null, error: null };
  private _previewSerial = 0;
  private _previewDebouncer: Debouncer<void>;
}

export namespace LaunchDialog {
  export interface IOptions {
    path: string;
    isNotebook: boolean;
    isReport?: boolean;
    form: ILaunchForm;
    backends: ReadonlyArray<IBackendInfo>;
    limits: IServerLimits;
    model: IJobsModel;
    trans: TranslationBundle;
    title?: string;
    serverError?: string | null;
    /** Offer "On a schedule", starting from these fields. */
    schedule?: { form: IScheduleForm; model: ISchedulesModel };
  }

  export interface IResult {
    form: ILaunchForm;
    request: ILaunchRequest;
    /** The schedule's fields and how they were typed ("On a schedule" only). */
    schedule?: { form: IScheduleForm; fields: ScheduleFields };
  }
}

/**
 * Show the launch dialog until the user cancels or the form is valid.
 * Resolves with the request to submit, or null when cancelled.
 */
export async function showLaunchDialog(
  options: LaunchDialog.IOptions
): Promise<LaunchDialog.IResult | null> {
  const { trans } = options;
  const context: ILaunchContext = {
    path: options.path,
    isNotebook: options.isNotebook,
    isReport: options.isReport,
    backends: options.backends,
    limits: options.limits
  };
  let form = options.form;
  let schedule = options.schedule;
  let showAllErrors = false;
  let serverError = options.serverError ?? null;
  for (;;) {
    const body = new LaunchDialogBody({
      form,
      context,
      model: options.model,
      trans,
      showAllErrors,
      serverError,
      schedule
    });
    const result = await showDialog<ILaunchForm>({
      title: options.title ?? trans.__('Run as Job'),
      body,
      buttons: [
        Dialog.cancelButton({ label: trans.__('Cancel') }),
        Dialog.okButton({ label: trans.__('Launch') })
      ],
      focusNodeSelector: 'input[name="memoryGib"]'
    });
    if (!result.button.accept || !result.value) {
      return null;
    }
    form = result.value;
    const choice = body.scheduleChoice;
    schedule =
      schedule && choice ? { ...schedule, form: choice.form } : schedule;
    const validation = validateLaunch(form, context, trans);
    const fields = choice?.fields ?? null;
    if (validation.request && !choice?.scheduled) {
      return { form, request: validation.request };
    }
    if (validation.request && choice && fields) {
      return {
        form,
        request: validation.request,
        schedule: { form: choice.form, fields }
      };
    }
    showAllErrors = true;
    serverError = null;
  }
}
