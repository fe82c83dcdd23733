import { Context } from '@temporalio/activity';
import { WORKER_COUNTERS, WORKER_HISTOGRAMS } from '../common/worker-metrics';

// Recording the worker's own metrics (common/worker-metrics.ts) from activities.

type Labels<C extends keyof typeof WORKER_COUNTERS> = Record<
  (typeof WORKER_COUNTERS)[C]['labels'][number],
  string
>;

/** Adds `value` to the worker's counter `counter`; from an activity. */
export function count<C extends keyof typeof WORKER_COUNTERS>(
  counter: C,
  value: number,
  labels?: Labels<C>,
): void {
  const { name, unit, description } = WORKER_COUNTERS[counter];
  Context.current().metricMeter.createCounter(name, unit, description).add(value, labels);
}

/** Records `value` in the worker's histogram `histogram`; from an activity. */
export function observe<H extends keyof typeof WORKER_HISTOGRAMS>(
  histogram: H,
  value: number,
  labels: Record<(typeof WORKER_HISTOGRAMS)[H]['labels'][number], string>,
): void {
  const { name, unit, description } = WORKER_HISTOGRAMS[histogram];
  Context.current().metricMeter.createHistogram(name, 'float', unit, description).record(value, labels);
}
