import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { spendFigures, spendText } from '../spend';
import type { IServerConfig } from '../tokens';

/**
 * The line at the top of the Jobs panel: spend per hour now and today, with
 * the caps; nothing when no configured backend prices its jobs.
 */
export function SpendSummary(props: {
  config: IServerConfig | null;
  trans: TranslationBundle;
}): JSX.Element | null {
  const figures = spendFigures(props.config);
  if (!figures) {
    return null;
  }
  return (
    <div className="jp-AWSJobs-spend" role="status">
      {spendText(figures, props.trans)}
    </div>
  );
}
