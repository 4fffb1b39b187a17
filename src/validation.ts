/**
 * The launch form: its raw values and their validation into a request.
 * Pure functions, so the dialog and the tests share them.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { IJob, ILaunchRequest } from './tokens';

/** The launch form as typed by the user (numbers still strings). */
export interface ILaunchForm {
  backend: string;
  memoryGib: string;
  cpus: string;
  spot: boolean;
  maxLifetimeMinutes: string;
  logPath: string;
  parameters: string;
  env: string;
  instanceType: string;
}

export type LaunchField = keyof ILaunchForm;

export type LaunchErrors = { [field in LaunchField]?: string };

/** What the validation knows besides the form. */
export interface ILaunchContext {
  path: string;
  isNotebook: boolean;
  /** Backend ids the user may choose. */
  backends: ReadonlyArray<string>;
  maxAllowedLifetimeMinutes: number;
}

export interface IValidation {
  errors: LaunchErrors;
  request: ILaunchRequest | null;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;
export const MAX_MEMORY_GIB = 24576;
export const MAX_CPUS = 448;

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
    const detail = error instanceof Error ? error.message : String(error);
    return {
      parameters: {},
      error: trans.__('Not valid JSON: %1', detail)
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

/** Validate the form; the request is null when any field is invalid. */
export function validateLaunch(
  form: ILaunchForm,
  context: ILaunchContext,
  trans: TranslationBundle
): IValidation {
  const errors: LaunchErrors = {};

  if (!context.backends.includes(form.backend)) {
    errors.backend = trans.__('Choose a backend');
  }

  const memory = parseNumber(form.memoryGib);
  if (memory === null || memory <= 0) {
    errors.memoryGib = trans.__('Memory must be a number of GiB above 0');
  } else if (memory > MAX_MEMORY_GIB) {
    errors.memoryGib = trans.__(
      'Memory must be at most %1 GiB',
      MAX_MEMORY_GIB
    );
  }

  const cpus = parseNumber(form.cpus);
  if (cpus === null || !Number.isInteger(cpus) || cpus < 1) {
    errors.cpus = trans.__('CPUs must be a whole number, at least 1');
  } else if (cpus > MAX_CPUS) {
    errors.cpus = trans.__('CPUs must be at most %1', MAX_CPUS);
  }

  const lifetime = parseNumber(form.maxLifetimeMinutes);
  const maxLifetime = context.maxAllowedLifetimeMinutes;
  if (lifetime === null || !Number.isInteger(lifetime) || lifetime < 1) {
    errors.maxLifetimeMinutes = trans.__(
      'Maximum lifetime must be a whole number of minutes, at least 1'
    );
  } else if (maxLifetime > 0 && lifetime > maxLifetime) {
    errors.maxLifetimeMinutes = trans.__(
      'Maximum lifetime must be at most %1 minutes',
      maxLifetime
    );
  }

  const logPath = form.logPath.trim();
  if (logPath) {
    if (logPath.startsWith('/') || /^[A-Za-z]:[\\/]/.test(logPath)) {
      errors.logPath = trans.__(
        'The log path is relative to the server root (no leading /)'
      );
    } else if (logPath.split(/[\\/]/).includes('..')) {
      errors.logPath = trans.__('The log path cannot go above the server root');
    } else if (logPath.endsWith('/')) {
      errors.logPath = trans.__('The log path must name a file');
    }
  }

  let parameters: { [name: string]: unknown } = {};
  if (context.isNotebook) {
    const parsed = parseParameters(form.parameters, trans);
    if (parsed.error) {
      errors.parameters = parsed.error;
    }
    parameters = parsed.parameters;
  }

  const parsedEnv = parseEnv(form.env, trans);
  if (parsedEnv.error) {
    errors.env = parsedEnv.error;
  }

  const instanceType = form.instanceType.trim();
  if (instanceType && !INSTANCE_TYPE.test(instanceType)) {
    errors.instanceType = trans.__('An instance type looks like "m6i.large"');
  }

  if (Object.keys(errors).length > 0) {
    return { errors, request: null };
  }
  const request: ILaunchRequest = {
    path: context.path,
    backend: form.backend,
    memory_gib: memory as number,
    cpus: cpus as number,
    spot: form.spot,
    max_lifetime_minutes: lifetime as number
  };
  if (logPath) {
    request.log_path = logPath;
  }
  if (Object.keys(parsedEnv.env).length) {
    request.env = parsedEnv.env;
  }
  if (context.isNotebook && Object.keys(parameters).length) {
    request.parameters = parameters;
  }
  if (instanceType && form.backend === 'ec2') {
    request.instance_type = instanceType;
  }
  return { errors, request };
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
    env: formatEnv(job.env),
    instanceType: job.requested_instance_type ?? ''
  };
}
