/**
 * The launch dialog's "Run now" / "On a schedule" part, as one object the
 * dialog's body holds: the schedule's form and its errors, what it renders,
 * whether it keeps the accept button disabled, and the button's label.
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { LaunchModeChoice, ScheduleFields } from '../components/ScheduleFields';
import type { IBackendInfo } from '../tokens';
import {
  IScheduleForm,
  ScheduleErrors,
  ScheduleField,
  ScheduleFields as ScheduleRequestFields,
  validateSchedule,
  whereSchedulesRun
} from './form';
import type { ISchedulesModel } from './tokens';

export namespace ScheduleChoice {
  export interface IOptions {
    form: IScheduleForm;
    model: ISchedulesModel;
    trans: TranslationBundle;
    /** The server's grace for missed local runs (`GET config`; null: not said). */
    missedRunGraceMinutes?: number | null;
    /** Re-render the dialog's body. */
    onUpdate: () => void;
  }
}

export class ScheduleChoice {
  constructor(options: ScheduleChoice.IOptions) {
    this._options = options;
    this._form = { ...options.form };
  }

  get form(): IScheduleForm {
    return { ...this._form };
  }

  /** Whether the dialog creates a schedule rather than running once now. */
  get scheduled(): boolean {
    return this._form.mode === 'schedule';
  }

  get errors(): ScheduleErrors {
    return validateSchedule(this._form, this._options.trans).errors;
  }

  /** The schedule's fields of the request, or null (run now, or invalid). */
  get fields(): ScheduleRequestFields | null {
    return this.scheduled
      ? validateSchedule(this._form, this._options.trans).fields
      : null;
  }

  /** Keep the accept button disabled: invalid fields, or a cron the server refuses. */
  get blocksAccept(): boolean {
    return (
      this.scheduled &&
      (Object.keys(this.errors).length > 0 || this._cronError !== null)
    );
  }

  /** The accept button's label. */
  acceptLabel(runNowLabel: string): string {
    return this.scheduled
      ? this._options.trans.__('Create schedule')
      : runNowLabel;
  }

  render(backend: IBackendInfo | undefined, showAll: boolean): JSX.Element {
    const { model, trans, onUpdate } = this._options;
    const all = this.errors;
    const shown: ScheduleErrors = {};
    for (const [field, message] of Object.entries(all)) {
      if (showAll || this._touched.has(field as ScheduleField)) {
        shown[field as ScheduleField] = message;
      }
    }
    return (
      <>
        <LaunchModeChoice
          mode={this._form.mode}
          onChange={mode => {
            this._form = { ...this._form, mode };
            onUpdate();
          }}
          trans={trans}
        />
        {this.scheduled && (
          <ScheduleFields
            form={this._form}
            onChange={(field, value) => {
              this._form = { ...this._form, [field]: value };
              this._touched.add(field);
              onUpdate();
            }}
            errors={shown}
            model={model}
            note={whereSchedulesRun(
              backend,
              trans,
              this._options.missedRunGraceMinutes ?? null
            )}
            onCronError={error => {
              if (error !== this._cronError) {
                this._cronError = error;
                onUpdate();
              }
            }}
            trans={trans}
          />
        )}
      </>
    );
  }

  private _options: ScheduleChoice.IOptions;
  private _form: IScheduleForm;
  private _touched = new Set<ScheduleField>();
  private _cronError: string | null = null;
}
