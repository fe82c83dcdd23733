import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { WORKER_HISTOGRAMS } from '../common/worker-metrics';
import type { Config } from '../common/config';
import { logger } from '../common/logger';

const PINO_LEVEL: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/**
 * Routes the SDK's and workflows' logs (one line per build transition, with workflow id and
 * build name) into the service's JSON logs, and exposes the SDK's Prometheus metrics
 * (activity and workflow task latencies, slots, polls) when an address is configured.
 */
export function installRuntime(config: Config): void {
  Runtime.install({
    logger: new DefaultLogger('INFO', ({ level, message, meta }) =>
      logger[PINO_LEVEL[level]](meta ?? {}, message),
    ),
    telemetryOptions: config.workerMetricsAddress
      ? {
          metrics: {
            prometheus: {
              bindAddress: config.workerMetricsAddress,
              countersTotalSuffix: true,
              histogramBucketOverrides: Object.fromEntries(
                Object.values(WORKER_HISTOGRAMS).map(({ name, buckets }) => [name, [...buckets]]),
              ),
            },
          },
        }
      : undefined,
  });
}
