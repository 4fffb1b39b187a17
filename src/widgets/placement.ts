/**
 * Where the Jobs panel lives: the side bar the `panelArea` setting names.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { Widget } from '@lumino/widgets';

import type { IJobsModel, PanelArea } from '../tokens';

/** The shell calls the placement needs. */
export type PanelShell = Pick<JupyterFrontEnd.IShell, 'add' | 'activateById'>;

/**
 * Keep the panel in the area the `panelArea` setting names: at start and
 * whenever it changes (a shown panel stays shown). JupyterLab's own "Switch
 * Sidebar Side" wins over it: the shell applies the user's layout on `add`.
 */
export function followPanelArea(
  shell: PanelShell,
  panel: Widget,
  model: IJobsModel
): void {
  let placed: PanelArea | null = null;
  const place = () => {
    const area: PanelArea =
      model.settings.panelArea === 'left' ? 'left' : 'right';
    if (area === placed) {
      return;
    }
    const shown = placed !== null && panel.isVisible;
    placed = area;
    shell.add(panel, area, { rank: 50 });
    if (shown) {
      shell.activateById(panel.id);
    }
  };
  place();
  model.changed.connect(place);
}
