/**
 * Follows one job's log incrementally (`GET jobs/{id}/log?offset=`) with its
 * own Poll, alive only while a log view shows it.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, errorText } from './handler';
import {
  applyChunk,
  emptyLogState,
  ILogState,
  shouldReadAgain
} from './logbuffer';
import type { ILogChunk } from './tokens';

/** Reads per poll tick while more bytes are waiting. */
const MAX_READS_PER_TICK = 8;
/** Bytes asked per read (the server's cap). */
export const READ_LIMIT = 256 * 1024;

export namespace LogFollower {
  export interface IOptions {
    jobId: string;
    read: (id: string, offset: number, limit: number) => Promise<ILogChunk>;
    /** Keep (and show) at most this many bytes of the end of the log. */
    tailBytes: number;
    /** Keep at most this many lines. */
    maxLines?: number;
    /** Seconds between reads once at the end of the file. */
    intervalSeconds?: number;
    /** Whether nobody can see the log now (the poll then stands by). */
    isHidden?: () => boolean;
  }
}

export class LogFollower {
  constructor(options: LogFollower.IOptions) {
    this.jobId = options.jobId;
    this._read = options.read;
    this._tailBytes = Math.max(4096, options.tailBytes);
    this._maxLines = options.maxLines ?? 5000;
    const interval = Math.max(0.25, options.intervalSeconds ?? 1) * 1000;
    this._poll = new Poll({
      factory: () => this._readSome(),
      frequency: { interval, backoff: true, max: Math.max(interval, 30000) },
      name: `awsjobs-lab:log:${options.jobId}`,
      standby: () => (options.isHidden?.() ? true : 'when-hidden')
    });
  }

  readonly jobId: string;

  get state(): ILogState {
    return this._state;
  }
  get error(): string | null {
    return this._error;
  }
  get changed(): ISignal<this, ILogState> {
    return this._changed;
  }
  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Read now (e.g. when the job's state changed). */
  refresh(): void {
    if (!this._state.complete && !this._isDisposed) {
      void this._poll.refresh();
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _readSome(): Promise<void> {
    for (let i = 0; i < MAX_READS_PER_TICK; i++) {
      let chunk: ILogChunk;
      try {
        chunk = await this._read(this.jobId, this._state.offset, READ_LIMIT);
      } catch (reason) {
        if (this._isDisposed) {
          return;
        }
        if (reason instanceof ApiError && reason.status === 404) {
          // No log file yet (the job has not started writing): try later.
          return;
        }
        this._error = errorText(reason);
        this._changed.emit(this._state);
        throw reason;
      }
      if (this._isDisposed) {
        return;
      }
      this._error = null;
      this._state = applyChunk(this._state, chunk, {
        tailBytes: this._tailBytes,
        maxChars: this._tailBytes,
        maxLines: this._maxLines
      });
      this._changed.emit(this._state);
      if (this._state.complete) {
        // No more bytes will ever come.
        void this._poll.stop();
        return;
      }
      if (!shouldReadAgain(this._state)) {
        return;
      }
    }
  }

  private _read: LogFollower.IOptions['read'];
  private _tailBytes: number;
  private _maxLines: number;
  private _poll: Poll;
  private _state: ILogState = emptyLogState();
  private _error: string | null = null;
  private _isDisposed = false;
  private _changed = new Signal<this, ILogState>(this);
}
