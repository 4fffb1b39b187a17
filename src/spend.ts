/**
 * The spend line of the Jobs panel, from `GET config` `budget`: spend per hour
 * now and today, against the caps the server sets.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import { formatCost, formatPrice } from './format';
import type { IServerConfig, ISpendFigures } from './tokens';

/**
 * The figures to show: when the server reports them and a configured backend
 * prices its jobs (null otherwise). The model re-reads the config on each
 * poll while this holds, so the line follows the jobs.
 */
export function spendFigures(
  config: IServerConfig | null
): ISpendFigures | null {
  if (!config?.budget) {
    return null;
  }
  const priced = config.backends.some(
    b => b.configured && b.capabilities?.hourly_price
  );
  return priced ? config.budget : null;
}

/** "$0.6000/h now (1 instance) · $1.23 today", with the caps when set. */
export function spendText(
  figures: ISpendFigures,
  trans: TranslationBundle
): string {
  const hourly =
    figures.max_hourly_spend === null
      ? trans.__('%1 now', formatPrice(figures.hourly_spend))
      : trans.__(
          '%1 of %2 now',
          formatPrice(figures.hourly_spend),
          formatPrice(figures.max_hourly_spend)
        );
  const count = figures.active_instances;
  const instances =
    figures.max_active_instances === null
      ? trans._n('%1 instance', '%1 instances', count)
      : // The count n is %1: here the cap, so "1 of 1 instance".
        trans._n(
          '%2 of %1 instance',
          '%2 of %1 instances',
          figures.max_active_instances,
          count
        );
  const today = trans.__(
    '%1 today',
    formatCost(figures.spend_today) || formatCost(0)
  );
  return trans.__('Spend: %1 (%2) · %3', hourly, instances, today);
}
