/**
 * What the Jobs panel's other views (Instances, Schedules) have in common:
 * a list read from the server on demand (one read in flight, shared), the
 * server's message when it cannot be read, and whether the view is shown.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { errorText } from './handler';

export abstract class PanelListModel<T> {
  get changed(): ISignal<this, void> {
    return this._changed;
  }
  get rows(): ReadonlyArray<T> {
    return this.listed;
  }
  /** The server's message when the list cannot be read. */
  get error(): string | null {
    return this._error;
  }
  get loaded(): boolean {
    return this._loaded;
  }
  /** Whether the Jobs panel shows this view. */
  get shown(): boolean {
    return this._shown;
  }

  setShown(shown: boolean): void {
    if (this._shown === shown) {
      return;
    }
    this._shown = shown;
    this._changed.emit();
    if (shown) {
      void this.refresh();
    }
  }

  /** Read the list now (sharing a read in flight); failures become `error`. */
  refresh(): Promise<void> {
    if (!this._reading) {
      this._reading = this._read().finally(() => {
        this._reading = null;
      });
    }
    return this._reading;
  }

  dispose(): void {
    Signal.clearData(this);
  }

  /** The rows from the server, in the view's order. */
  protected abstract readRows(): Promise<T[]>;

  /** The rows shown while the list cannot be read (default: the last ones). */
  protected rowsOnError(): T[] {
    return this.listed;
  }

  /** The rows change outside a read (an action's answer). */
  protected setRows(rows: T[]): void {
    this.listed = rows;
    this._changed.emit();
  }

  /** When the list was last asked for (ms since the epoch; 0: never). */
  protected lastRead = 0;
  protected listed: T[] = [];

  private async _read(): Promise<void> {
    this.lastRead = Date.now();
    try {
      this.listed = await this.readRows();
      this._error = null;
    } catch (reason) {
      this.listed = this.rowsOnError();
      this._error = errorText(reason);
    }
    this._loaded = true;
    this._changed.emit();
  }

  private _error: string | null = null;
  private _loaded = false;
  private _shown = false;
  private _reading: Promise<void> | null = null;
  private _changed = new Signal<this, void>(this);
}
