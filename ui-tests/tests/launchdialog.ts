/**
 * The launch dialog, once it is ready for typing.
 */
import { expect, IJupyterLabPageFixture } from '@jupyterlab/galata';
import type { Locator } from '@playwright/test';

/**
 * The open launch dialog, after JupyterLab's Dialog has moved the focus to its
 * Memory field. The Dialog does that once the React body has rendered: the
 * moment its fields become visible. Text a test types in between can land in
 * the Memory field instead of the one it filled (seen once: the parameters
 * typed into a re-opened dialog never reached the POST). A person is slower.
 */
export async function readyLaunchDialog(
  page: IJupyterLabPageFixture
): Promise<Locator> {
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.locator('.jp-AWSJobs-launch')).toBeVisible();
  await expect(dialog.locator('input[name="memoryGib"]')).toBeFocused();
  return dialog;
}
