import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { DEFAULT_SETTINGS, IJobsModel, IJobsSettings } from '../tokens';
import { followPanelArea, PanelShell } from '../widgets/placement';

/** A model whose settings the test changes, with its `changed` signal. */
function fakeModel(): {
  model: IJobsModel;
  set: (settings: Partial<IJobsSettings>) => void;
} {
  const state = {
    settings: { ...DEFAULT_SETTINGS },
    changed: new Signal<object, void>({})
  };
  return {
    model: state as unknown as IJobsModel,
    set: settings => {
      state.settings = { ...state.settings, ...settings };
      state.changed.emit();
    }
  };
}

describe('followPanelArea (the panelArea setting)', () => {
  it('adds the panel to the right, then moves it when the setting changes', () => {
    const added: string[] = [];
    const shell: PanelShell = {
      add: (_widget, area) => {
        added.push(String(area));
      },
      activateById: () => undefined
    };
    const { model, set } = fakeModel();
    const panel = new Widget();
    followPanelArea(shell, panel, model);
    expect(added).toEqual(['right']);
    set({ pollIntervalSeconds: 5 });
    expect(added).toEqual(['right']);
    set({ panelArea: 'left' });
    set({ panelArea: 'left' });
    expect(added).toEqual(['right', 'left']);
    set({ panelArea: 'right' });
    expect(added).toEqual(['right', 'left', 'right']);
  });
});
