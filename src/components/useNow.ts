import * as React from 'react';

import type { IJobsModel } from '../tokens';

/**
 * The current time in epoch seconds, refreshed by the model's clock while
 * `ticking` (the clock itself stands by when nothing is active or visible).
 */
export function useNow(model: IJobsModel, ticking: boolean): number {
  const [now, setNow] = React.useState(() => Date.now() / 1000);
  React.useEffect(() => {
    if (!ticking) {
      setNow(Date.now() / 1000);
      return;
    }
    const onTick = (_: IJobsModel, at: number) => setNow(at);
    model.tick.connect(onTick);
    return () => {
      model.tick.disconnect(onTick);
    };
  }, [model, ticking]);
  return now;
}
