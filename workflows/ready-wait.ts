import { metricMeter } from '@temporalio/workflow';
import { WORKER_HISTOGRAMS } from '../common/worker-metrics';
import type { BuildStatus } from '../common/types';
import type { ReadyWait } from './definitions';

/**
 * The wait that goes on once the build's status is `status`: one that ends with the build
 * started is counted in `runboat_build_ready_seconds` (through the SDK's workflow metrics, which
 * skip replays: each wait is counted once, and no command is issued); one that a stop, a failure
 * or an undeploy ends is dropped uncounted.
 */
export function readyWaitAfter(wait: ReadyWait | undefined, status: BuildStatus): ReadyWait | undefined {
  if (wait === undefined) return undefined;
  if (status === 'started') {
    const { name, unit, description } = WORKER_HISTOGRAMS.buildReadySeconds;
    metricMeter
      .createHistogram(name, 'float', unit, description)
      // `since` may come from the API's clock (a new build's creation), a little ahead of Temporal's.
      .record(Math.max(0, Date.now() - wait.since) / 1000, { request: wait.request });
    return undefined;
  }
  return status === 'initializing' || status === 'starting' ? wait : undefined;
}
