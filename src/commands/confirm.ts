/**
 * Confirm, then act, then report a failure: the one shape of Stop and Remove.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';

import { errorText } from '../handler';

export interface IConfirmThenAct {
  /** Ask first (false when the caller already asked, e.g. `confirm: false`). */
  ask: boolean;
  title: string;
  body: string;
  /** The label of the (warning) button that goes ahead. */
  acceptLabel: string;
  /** The action; a rejection is reported, never thrown. */
  act: () => Promise<unknown>;
  /** The notification's text for a failure, given the error's text. */
  failure: (error: string) => string;
  trans: TranslationBundle;
}

/** Resolves true when the action ran and succeeded. */
export async function confirmThenAct(
  options: IConfirmThenAct
): Promise<boolean> {
  const { trans } = options;
  if (options.ask) {
    const answer = await showDialog({
      title: options.title,
      body: options.body,
      buttons: [
        Dialog.cancelButton({ label: trans.__('Cancel') }),
        Dialog.warnButton({ label: options.acceptLabel })
      ]
    });
    if (!answer.button.accept) {
      return false;
    }
  }
  try {
    await options.act();
    return true;
  } catch (reason) {
    Notification.error(options.failure(errorText(reason)));
    return false;
  }
}
