/**
 * Every awsjobs command, registered once: buttons, menus, the palette and
 * the tests all run these. Launching lives in `run.ts` (and `launch/`), the
 * commands on one job in `job.ts`.
 */
import type { ICommandsOptions } from './context';
import { registerJobCommands } from './job';
import { registerRunCommands } from './run';

export type { ICommandsOptions } from './context';

export function registerCommands(options: ICommandsOptions): void {
  registerRunCommands(options);
  registerJobCommands(options);
}
