import type { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import * as React from 'react';

import { formatPrice } from '../format';
import { InstancesModel, runningFigures } from '../instances';

/**
 * "EC2: 2 running · $0.7200/h": this tool's running instances and their spend
 * per hour; empty when none is running.
 */
export function instancesStatusText(
  instances: InstancesModel,
  trans: TranslationBundle
): string {
  const { count, hourly } = runningFigures(instances.rows);
  if (count === 0) {
    return '';
  }
  const running = trans._n('EC2: %1 running', 'EC2: %1 running', count);
  return hourly > 0 ? `${running} · ${formatPrice(hourly)}` : running;
}

/** The status-bar item; a click opens the Instances view. */
export function createInstancesStatus(
  instances: InstancesModel,
  trans: TranslationBundle,
  open: () => void
): ReactWidget {
  const widget = ReactWidget.create(
    <UseSignal signal={instances.changed}>
      {() => {
        const text = instancesStatusText(instances, trans);
        return text ? (
          <span
            className="jp-AWSJobs-status"
            title={trans.__('Instances this tool is paying for: show them')}
            onClick={open}
          >
            {text}
          </span>
        ) : null;
      }}
    </UseSignal>
  );
  widget.addClass('jp-AWSJobs-statusItem');
  return widget;
}
