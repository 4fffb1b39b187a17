/**
 * The launch form: its raw values and their validation into a request.
 * Pure functions, so the dialog and the tests share them.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import { backendCan } from './backends';
import { errorText } from './handler';
import {
  MAX_ATTEMPTS_LIMIT,
  MAX_GPUS,
  type IBackendInfo,
  type IJob,
  type ILaunchRequest,
  type IServerLimits,
  type OnInterruption
} from './tokens';

/** The launch form as typed by the user (numbers still strings). */
export interface ILaunchForm {
  backend: string;
  memoryGib: string;
  cpus: string;
  spot: boolean;
  maxLifetimeMinutes: string;
  logPath: string;
  parameters: string;
  /** A script's command-line arguments: one per line. */
  args: string;
  env: string;
  instanceType: string;
  /** Spot only: what an interruption does, and the attempts in all. */
  onInterruption: OnInterruption;
  maxAttempts: string;
  /** GPUs (a backend with the `gpus` capability): count, GiB each, model. */
  gpus: string;
  gpuMemoryGib: string;
  gpuModel: string;
}

export type LaunchField = keyof ILaunchForm;

export type LaunchErrors = { [field in LaunchField]?: string };

/** What the validation knows besides the form. */
export interface ILaunchContext {
  path: string;
  isNotebook: boolean;
  /** An R Markdown or Quarto report: it takes parameters (and no arguments). */
  isReport?: boolean;
  /** The backends the user may choose (their capabilities decide the fields). */
  backends: ReadonlyArray<IBackendInfo>;
  /** The server's largest values (`GET config` `limits`; 0: no limit). */
  limits: IServerLimits;
}

export interface IValidation {
  errors: LaunchErrors;
  request: ILaunchRequest | null;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;
const GPU_MODEL = /^[A-Za-z0-9][A-Za-z0-9-]{0,39}$/;

/** The GPU fields of a request: what `gpus`, `gpu_memory_gib`, `gpu_model` carry. */
type GpuRequest = Pick<ILaunchRequest, 'gpus' | 'gpu_memory_gib' | 'gpu_model'>;

/**
 * Check the GPU fields (errors set on the form's fields); the request's
 * fields, empty when no GPU is asked for.
 */
export function validateGpus(
  form: Pick<ILaunchForm, 'gpus' | 'gpuMemoryGib' | 'gpuModel'>,
  errors: LaunchErrors,
  trans: TranslationBundle
): GpuRequest {
  const count = parseNumber(form.gpus.trim() || '0');
  if (count === null || !Number.isInteger(count) || count > MAX_GPUS) {
    errors.gpus = trans.__('A whole number from 0 to %1', MAX_GPUS);
  }
  const memory = parseNumber(form.gpuMemoryGib.trim() || '0');
  if (memory === null) {
    errors.gpuMemoryGib = trans.__('A number of GiB, 0 or more');
  }
  const model = form.gpuModel.trim();
  if (model && !GPU_MODEL.test(model)) {
    errors.gpuModel = trans.__('A GPU name like T4, A10G or L4');
  }
  if (!count) {
    return {};
  }
  const request: GpuRequest = { gpus: count };
  if (memory) {
    request.gpu_memory_gib = memory;
  }
  if (model) {
    request.gpu_model = model;
  }
  return request;
}

/** Whether a value is above a limit (a limit of 0 is no limit). */
function above(value: number, limit: number): boolean {
  return limit > 0 && value > limit;
}

/** Parse `NAME=value` lines (blank lines and `#` comments ignored). */
export function parseEnv(
  text: string,
  trans: TranslationBundle
): { env: { [name: string]: string }; error: string | null } {
  const env: { [name: string]: string } = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith('#')) {
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) {
      return {
        env,
        error: trans.__('Line %1: expected NAME=value', i + 1)
      };
    }
    const name = line.slice(0, eq).trim();
    if (!ENV_NAME.test(name)) {
      return {
        env,
        error: trans.__(
          'Line %1: "%2" is not a valid variable name',
          i + 1,
          name
        )
      };
    }
    env[name] = line.slice(eq + 1);
  }
  return { env, error: null };
}

/** Format an env mapping back into lines. */
export function formatEnv(env: { [name: string]: string } | undefined): string {
  return Object.entries(env ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
}

/** The most arguments a script takes, and their bytes in all (the server's limits). */
export const MAX_ARGS = 256;
export const MAX_ARGS_BYTES = 64 * 1024;

/**
 * A script's arguments: one per line, each taken as typed (spaces, quotes
 * and `$` included); blank lines are skipped.
 */
export function parseArgs(
  text: string,
  trans: TranslationBundle
): { args: string[]; error: string | null } {
  const args = text
    .split('\n')
    .map(line => line.replace(/\r$/, ''))
    .filter(line => line.length > 0);
  if (args.length > MAX_ARGS) {
    return { args, error: trans.__('At most %1 arguments', MAX_ARGS) };
  }
  const bytes = args.reduce(
    (sum, arg) => sum + new TextEncoder().encode(arg).length + 1,
    0
  );
  if (bytes > MAX_ARGS_BYTES) {
    return {
      args,
      error: trans.__('At most %1 KiB of arguments', MAX_ARGS_BYTES / 1024)
    };
  }
  return { args, error: null };
}

/** Parse the notebook parameters: empty, or a JSON object. */
export function parseParameters(
  text: string,
  trans: TranslationBundle
): { parameters: { [name: string]: unknown }; error: string | null } {
  if (!text.trim()) {
    return { parameters: {}, error: null };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return {
      parameters: {},
      error: trans.__('Not valid JSON: %1', errorText(error))
    };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return {
      parameters: {},
      error: trans.__('Parameters must be a JSON object, like {"alpha": 0.5}')
    };
  }
  return { parameters: value as { [name: string]: unknown }, error: null };
}

function parseNumber(text: string): number | null {
  const trimmed = text.trim();
  if (!trimmed || !/^[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(trimmed)) {
    return null;
  }
  const value = Number(trimmed);
  return isFinite(value) ? value : null;
}

/** The numbers of a form, each null when invalid (its error then set). */
interface INumbers {
  memory: number | null;
  cpus: number | null;
  lifetime: number | null;
}

/** Check memory, CPUs and lifetime against the server's limits. */
function validateNumbers(
  form: ILaunchForm,
  limits: IServerLimits,
  errors: LaunchErrors,
  trans: TranslationBundle
): INumbers {
  const memory = parseNumber(form.memoryGib);
  if (memory === null || memory <= 0) {
    errors.memoryGib = trans.__('Memory must be a number of GiB above 0');
  } else if (above(memory, limits.memory_gib)) {
    errors.memoryGib = trans.__(
      'Memory must be at most %1 GiB',
      limits.memory_gib
    );
  }

  const cpus = parseNumber(form.cpus);
  if (cpus === null || !Number.isInteger(cpus) || cpus < 1) {
    errors.cpus = trans.__('CPUs must be a whole number, at least 1');
  } else if (above(cpus, limits.cpus)) {
    errors.cpus = trans.__('CPUs must be at most %1', limits.cpus);
  }

  const lifetime = parseNumber(form.maxLifetimeMinutes);
  if (lifetime === null || !Number.isInteger(lifetime) || lifetime < 1) {
    errors.maxLifetimeMinutes = trans.__(
      'Maximum lifetime must be a whole number of minutes, at least 1'
    );
  } else if (above(lifetime, limits.max_lifetime_minutes)) {
    errors.maxLifetimeMinutes = trans.__(
      'Maximum lifetime must be at most %1 minutes',
      limits.max_lifetime_minutes
    );
  }
  return { memory, cpus, lifetime };
}

/** Why a log path is refused, or null (an empty path is the default). */
function logPathError(
  logPath: string,
  trans: TranslationBundle
): string | null {
  if (!logPath) {
    return null;
  }
  if (logPath.startsWith('/') || /^[A-Za-z]:[\\/]/.test(logPath)) {
    return trans.__(
      'The log path is relative to the server root (no leading /)'
    );
  }
  if (logPath.split(/[\\/]/).includes('..')) {
    return trans.__('The log path cannot go above the server root');
  }
  if (logPath.endsWith('/')) {
    return trans.__('The log path must name a file');
  }
  return null;
}

/**
 * The server's limits narrowed by the chosen backend's own (a backend may
 * allow a shorter lifetime than the server; 0 means no limit).
 */
export function limitsFor(
  limits: IServerLimits,
  backend: IBackendInfo | undefined
): IServerLimits {
  const own = backend?.max_lifetime_minutes;
  if (typeof own !== 'number' || own <= 0) {
    return limits;
  }
  const server = limits.max_lifetime_minutes;
  return {
    ...limits,
    max_lifetime_minutes: server > 0 ? Math.min(server, own) : own
  };
}

/** Validate the form; the request is null when any field is invalid. */
export function validateLaunch(
  form: ILaunchForm,
  context: ILaunchContext,
  trans: TranslationBundle
): IValidation {
  const errors: LaunchErrors = {};

  if (!context.backends.some(b => b.id === form.backend)) {
    errors.backend = trans.__('Choose a backend');
  }

  const backend = context.backends.find(b => b.id === form.backend);
  const { memory, cpus, lifetime } = validateNumbers(
    form,
    limitsFor(context.limits, backend),
    errors,
    trans
  );

  const logPath = form.logPath.trim();
  const logError = logPathError(logPath, trans);
  if (logError) {
    errors.logPath = logError;
  }

  const takesParameters = context.isNotebook || !!context.isReport;
  let parameters: { [name: string]: unknown } = {};
  if (takesParameters) {
    const parsed = parseParameters(form.parameters, trans);
    if (parsed.error) {
      errors.parameters = parsed.error;
    }
    parameters = parsed.parameters;
  }

  const parsedArgs = takesParameters
    ? { args: [], error: null }
    : parseArgs(form.args, trans);
  if (parsedArgs.error) {
    errors.args = parsedArgs.error;
  }

  const parsedEnv = parseEnv(form.env, trans);
  if (parsedEnv.error) {
    errors.env = parsedEnv.error;
  }

  const instanceType = form.instanceType.trim();
  if (instanceType && !INSTANCE_TYPE.test(instanceType)) {
    errors.instanceType = trans.__('An instance type looks like "m6i.large"');
  }

  const maxAttempts = Number(form.maxAttempts.trim());
  if (
    !Number.isInteger(maxAttempts) ||
    maxAttempts < 1 ||
    maxAttempts > MAX_ATTEMPTS_LIMIT
  ) {
    errors.maxAttempts = trans.__(
      'A whole number from 1 to %1',
      MAX_ATTEMPTS_LIMIT
    );
  }

  const hasGpus = backendCan(context.backends, form.backend, 'gpus');
  const gpus = hasGpus ? validateGpus(form, errors, trans) : {};

  if (
    Object.keys(errors).length > 0 ||
    memory === null ||
    cpus === null ||
    lifetime === null
  ) {
    return { errors, request: null };
  }
  const request: ILaunchRequest = {
    path: context.path,
    backend: form.backend,
    memory_gib: memory,
    cpus,
    spot: form.spot,
    max_lifetime_minutes: lifetime
  };
  if (logPath) {
    request.log_path = logPath;
  }
  if (Object.keys(parsedEnv.env).length) {
    request.env = parsedEnv.env;
  }
  if (takesParameters && Object.keys(parameters).length) {
    request.parameters = parameters;
  }
  if (parsedArgs.args.length) {
    request.args = parsedArgs.args;
  }
  // Only a backend that honours an instance type is sent one.
  if (
    instanceType &&
    backendCan(context.backends, form.backend, 'instance_types')
  ) {
    request.instance_type = instanceType;
  }
  // What an interruption does: sent with spot on, where spot means something.
  if (form.spot && backendCan(context.backends, form.backend, 'spot')) {
    request.on_interruption = form.onInterruption;
    request.max_attempts = maxAttempts;
  }
  return { errors, request: { ...request, ...gpus } };
}

/** The form prefilled from an existing job (re-run with the same settings). */
export function formFromJob(job: IJob): ILaunchForm {
  return {
    backend: job.backend,
    memoryGib: String(job.memory_gib),
    cpus: String(job.cpus),
    spot: job.spot,
    maxLifetimeMinutes: String(job.max_lifetime_minutes),
    logPath: '',
    parameters:
      job.parameters && Object.keys(job.parameters).length
        ? JSON.stringify(job.parameters, null, 2)
        : '',
    args: (job.args ?? []).join('\n'),
    env: formatEnv(job.env),
    instanceType: job.requested_instance_type ?? '',
    onInterruption: job.on_interruption ?? 'retry',
    maxAttempts: String(job.max_attempts ?? 3),
    gpus: String(job.gpus ?? 0),
    gpuMemoryGib: job.gpu_memory_gib ? String(job.gpu_memory_gib) : '',
    gpuModel: job.gpu_model ?? ''
  };
}
