/**
 * The panel's words for a transfer of a job's files through S3 (storage
 * "s3"): "uploading inputs 120 MB of 340 MB", "downloading outputs 3 files".
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { ITransferProgress } from './tokens';

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** 120000000 → "120 MB" (decimal units, as S3's console shows sizes). */
export function formatBytes(bytes: number): string {
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** What a transfer is doing now, or null when there is none. */
export function transferText(
  progress: ITransferProgress | null | undefined,
  trans: TranslationBundle
): string | null {
  if (!progress) {
    return null;
  }
  if (progress.phase === 'uploading_inputs') {
    return trans.__(
      'uploading inputs %1 of %2',
      formatBytes(progress.bytes_done),
      formatBytes(progress.bytes_total)
    );
  }
  return trans._n(
    'downloading outputs %1 file',
    'downloading outputs %1 files',
    progress.files_total
  );
}
