/**
 * The launch dialog's "Run now" / "On a schedule" choice and the schedule's
 * fields: name, cron with its reading and next three runs (asked from the
 * server as the user types, debounced), time zone, optional start and end,
 * enabled, and where the schedule runs.
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { errorText } from '../handler';
import {
  cronLooksValid,
  formatRun,
  IScheduleForm,
  knownTimeZone,
  LaunchMode,
  ScheduleErrors,
  ScheduleField
} from '../schedules/form';
import type { ISchedulePreview, ISchedulesModel } from '../schedules/tokens';

/** Wait this long after the last key before asking the server. */
export const PREVIEW_DELAY_MS = 400;

/** The choice between one run now and a schedule. */
export function LaunchModeChoice(props: {
  mode: LaunchMode;
  onChange: (mode: LaunchMode) => void;
  trans: TranslationBundle;
}): JSX.Element {
  const { mode, onChange, trans } = props;
  const option = (value: LaunchMode, label: string) => (
    <label className="jp-AWSJobs-modeOption">
      <input
        type="radio"
        name="launchMode"
        value={value}
        checked={mode === value}
        onChange={() => onChange(value)}
      />
      <span>{label}</span>
    </label>
  );
  return (
    <div
      className="jp-AWSJobs-launchMode"
      role="radiogroup"
      aria-label={trans.__('When')}
    >
      {option('now', trans.__('Run now'))}
      {option('schedule', trans.__('On a schedule'))}
    </div>
  );
}

/** The server's reading of a cron expression, or its message. */
interface IPreviewState {
  loading: boolean;
  preview: ISchedulePreview | null;
  error: string | null;
}

/**
 * Ask `schedule-preview` for the cron and zone, `PREVIEW_DELAY_MS` after
 * they last changed; an answer to an older question is dropped.
 */
export function useSchedulePreview(
  model: ISchedulesModel,
  cron: string,
  timezone: string,
  onError: (error: string | null) => void
): IPreviewState {
  const [state, setState] = React.useState<IPreviewState>({
    loading: false,
    preview: null,
    error: null
  });
  React.useEffect(() => {
    if (!cronLooksValid(cron) || !knownTimeZone(timezone)) {
      setState({ loading: false, preview: null, error: null });
      onError(null);
      return;
    }
    let current = true;
    setState(s => ({ ...s, loading: true }));
    const timer = setTimeout(() => {
      model.preview(cron.trim(), timezone.trim()).then(
        preview => {
          if (current) {
            setState({ loading: false, preview, error: null });
            onError(null);
          }
        },
        reason => {
          if (current) {
            const error = errorText(reason);
            setState({ loading: false, preview: null, error });
            onError(error);
          }
        }
      );
    }, PREVIEW_DELAY_MS);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [model, cron, timezone]);
  return state;
}

/** The reading and the next three runs beside the cron field. */
function CronPreview(props: {
  state: IPreviewState;
  timezone: string;
  trans: TranslationBundle;
}): JSX.Element {
  const { state, timezone, trans } = props;
  if (state.error) {
    return (
      <div className="jp-AWSJobs-fieldError" data-field="cron" role="alert">
        {state.error}
      </div>
    );
  }
  if (!state.preview) {
    return (
      <div className="jp-AWSJobs-cronPreview" data-loading={state.loading}>
        {state.loading ? trans.__('Reading the schedule…') : ''}
      </div>
    );
  }
  return (
    <div className="jp-AWSJobs-cronPreview" data-loading={state.loading}>
      <div className="jp-AWSJobs-cronDescription">
        {state.preview.description}
      </div>
      <ol className="jp-AWSJobs-nextRuns" aria-label={trans.__('Next runs')}>
        {state.preview.next_runs.slice(0, 3).map(run => (
          <li key={run.utc}>{formatRun(run, timezone)}</li>
        ))}
      </ol>
    </div>
  );
}

export interface IScheduleFieldsProps {
  form: IScheduleForm;
  onChange: (field: ScheduleField, value: string | boolean) => void;
  /** The errors to show now (touched fields, or all after a refused submit). */
  errors: ScheduleErrors;
  model: ISchedulesModel;
  /** Where the chosen backend's schedules run, in words. */
  note: string;
  /** The server refused the cron expression (null: it reads it). */
  onCronError: (error: string | null) => void;
  trans: TranslationBundle;
}

/** The schedule's own fields (the job's are the dialog's usual ones). */
export function ScheduleFields(props: IScheduleFieldsProps): JSX.Element {
  const { form, onChange, errors, model, note, trans } = props;
  const preview = useSchedulePreview(
    model,
    form.cron,
    form.timezone,
    props.onCronError
  );
  const text = (field: ScheduleField) => (event: React.ChangeEvent) => {
    const target = event.target as HTMLInputElement;
    onChange(field, target.type === 'checkbox' ? target.checked : target.value);
  };
  const input = (
    field: Exclude<ScheduleField, 'enabled'>,
    label: string,
    attributes: React.InputHTMLAttributes<HTMLInputElement>
  ) => (
    <>
      <label className="jp-AWSJobs-field">
        <span>{label}</span>
        <input
          name={`schedule-${field}`}
          {...attributes}
          className={
            errors[field] ? 'jp-mod-styled jp-AWSJobs-invalid' : 'jp-mod-styled'
          }
          value={form[field]}
          onChange={text(field)}
        />
      </label>
      {errors[field] && (
        <div className="jp-AWSJobs-fieldError" data-field={field} role="alert">
          {errors[field]}
        </div>
      )}
    </>
  );
  return (
    <fieldset className="jp-AWSJobs-schedule">
      {input('name', trans.__('Schedule name'), { type: 'text' })}
      <div className="jp-AWSJobs-fieldRow">
        {input('cron', trans.__('Cron (minute hour day month weekday)'), {
          type: 'text',
          placeholder: '0 6 * * 1-5',
          spellCheck: false
        })}
        {input('timezone', trans.__('Time zone'), {
          type: 'text',
          placeholder: trans.__('Europe/Paris')
        })}
      </div>
      <CronPreview state={preview} timezone={form.timezone} trans={trans} />
      <div className="jp-AWSJobs-fieldRow">
        {input('startAt', trans.__('Start (optional, your time)'), {
          type: 'datetime-local'
        })}
        {input('endAt', trans.__('End (optional, your time)'), {
          type: 'datetime-local'
        })}
      </div>
      <label className="jp-AWSJobs-field jp-AWSJobs-checkbox">
        <input
          name="schedule-enabled"
          type="checkbox"
          checked={form.enabled}
          onChange={text('enabled')}
        />
        <span>{trans.__('Enabled')}</span>
      </label>
      <p className="jp-AWSJobs-scheduleNote">{note}</p>
    </fieldset>
  );
}
