import type { ISignal } from '@lumino/signaling';

/** A view of the Jobs panel other than the job list (Instances, Schedules). */
export interface IPanelView {
  readonly shown: boolean;
  setShown(shown: boolean): void;
  readonly changed: ISignal<unknown, void>;
}

/**
 * The panel shows one view at a time: showing one (from its tab, a command,
 * the status bar) hides the other, so it stops reading the server too.
 */
export function oneViewAtATime(a: IPanelView, b: IPanelView): void {
  a.changed.connect(() => {
    if (a.shown && b.shown) {
      b.setShown(false);
    }
  });
  b.changed.connect(() => {
    if (a.shown && b.shown) {
      a.setShown(false);
    }
  });
}
