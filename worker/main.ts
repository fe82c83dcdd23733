import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import { closeKustomizeRenderers, kustomizeRenderer } from '../activities/kustomize';
import { ConfigError, loadConfig, type Config } from '../common/config';
import { buildCluster, UnknownResourceTypesError, type BuildCluster } from '../common/kubernetes';
import { logger } from '../common/logger';
import { isTemporalUnreachable, waitToRetry } from '../common/retry';
import { loadWorkflowBundle } from './bundle';
import { WorkerHealth } from './health';
import { activitiesInFlight } from './heartbeats';
import { installRuntime } from './runtime';
import {
  ensureEvictionSchedule,
  ensureOrphanSweepSchedule,
  ensureWebhookRedeliverySchedule,
} from './schedule';
import { checkWorkflowCode, WorkflowCodeError } from './self-check';
import { createWorker, PROCESS_SHUTDOWN_FORCE_TIME, SLOW_SHUTDOWN_MS } from './worker';

// The worker process: runs build workflows and their activities until SIGTERM/SIGINT, when
// it stops polling and lets in-flight activities finish (the SDK's graceful shutdown).
// Temporal being unreachable is waited out, at start and while running: the worker connects
// again with backoff and polls anew. Anything else (bad configuration, workflow code that cannot
// run the latest release's builds) ends it with exit 1.

/** A worker that polled this long before losing Temporal starts its backoff over. */
const HEALTHY_RUN_MS = 60_000;

async function main(): Promise<void> {
  const config = loadConfig();
  // One client of the cluster for the process: the start-up check's discovery serves the first
  // undeploys, and a worker started again after losing Temporal keeps its connections.
  const cluster = buildCluster(config);
  await checkResourceTypes(cluster);
  // Not awaited: the first build's render finds it warm, or waits for it as it would have.
  kustomizeRenderer(config.kustomizeRenderer)
    .warmUp()
    .catch((error: unknown) =>
      logger.warn({ err: (error as Error).message }, 'kustomize-renderer failed to start'),
    );
  installRuntime(config);
  const health = new WorkerHealth();
  if (config.workerHealthAddress) await health.serve(config.workerHealthAddress);
  const workflowBundle = await loadWorkflowBundle();
  const checked = await checkWorkflowCode(workflowBundle);
  if (checked) logger.info(checked, "the workflow code replays the latest release's recorded histories");
  else logger.warn('no recorded histories beside the code: the workflow code is not checked before it runs');
  // The SDK shuts a running worker down on these signals; while no worker runs (Temporal is
  // down), they end the wait instead.
  const stopping = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'worker shutting down');
      health.setPolling(false);
      stopping.abort();
    });
  }
  for (let failures = 1; ; failures++) {
    let pollingSince: number | undefined;
    try {
      await runWorker(config, cluster, workflowBundle, stopping.signal, () => {
        pollingSince = Date.now();
        health.setPolling(true);
      });
      return;
    } catch (error) {
      health.setPolling(false);
      if (stopping.signal.aborted) return;
      if (!isTemporalUnreachable(error)) throw error;
      if (pollingSince !== undefined) {
        logger.warn({ err: (error as Error).message }, 'worker lost Temporal');
        if (Date.now() - pollingSince >= HEALTHY_RUN_MS) failures = 1;
      }
      await waitToRetry('connecting to Temporal', error, failures, { signal: stopping.signal }).catch(
        () => undefined,
      );
      if (stopping.signal.aborted) return;
    }
  }
}

/** How long start-up waits for the cluster's API discovery before going on without the check. */
const RESOURCE_TYPES_CHECK_MS = 10_000;

/**
 * A RUNBOAT_DEPLOYMENT_RESOURCE_TYPES the cluster does not serve stops start-up, rather than
 * the first undeploy weeks later. A cluster that cannot be reached now is no reason to stop:
 * each undeploy checks again.
 */
async function checkResourceTypes(cluster: BuildCluster): Promise<void> {
  try {
    await Promise.race([
      cluster.objectKinds(),
      new Promise((_, reject) => setTimeout(reject, RESOURCE_TYPES_CHECK_MS, new Error('timed out')).unref()),
    ]);
  } catch (error) {
    if (error instanceof UnknownResourceTypesError)
      throw new ConfigError(`invalid configuration: ${error.message}`);
    logger.warn(
      { err: (error as Error).message },
      'could not check RUNBOAT_DEPLOYMENT_RESOURCE_TYPES against the cluster; each undeploy will',
    );
  }
}

/** One life of the worker: connects, ensures the schedules, polls until shut down or cut off. */
async function runWorker(
  config: Config,
  cluster: BuildCluster,
  workflowBundle: WorkflowBundleOption,
  stopping: AbortSignal,
  polling: () => void,
): Promise<void> {
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  let clientConnection: Connection | undefined;
  try {
    clientConnection = await Connection.connect({ address: config.temporalAddress });
    const client = new Client({ connection: clientConnection, namespace: config.temporalNamespace });
    await ensureEvictionSchedule(client, config);
    await ensureOrphanSweepSchedule(client, config);
    await ensureWebhookRedeliverySchedule(client, config);
    if (stopping.aborted) return;
    const worker = await createWorker(config, connection, cluster, {
      shutdownForceTime: PROCESS_SHUTDOWN_FORCE_TIME,
      workflowBundle,
    });
    logger.info({ taskQueue: config.taskQueue, namespace: config.buildNamespace }, 'worker started');
    polling();
    // Said while it drains, so that a shutdown that hangs says on what.
    let slowTimer: NodeJS.Timeout | undefined;
    const onStopping = () => {
      slowTimer = setTimeout(
        () =>
          logger.warn(
            { status: worker.getStatus(), activities: activitiesInFlight() },
            'worker still draining',
          ),
        SLOW_SHUTDOWN_MS,
      );
    };
    stopping.addEventListener('abort', onStopping, { once: true });
    try {
      await worker.run();
    } catch (error) {
      // Forced past shutdownForceTime, the SDK's run ends in an error of its own (not always
      // GracefulShutdownPeriodExpiredError): a shutdown asked for still ends the process.
      if (!stopping.aborted) throw error;
      logger.warn(
        { err: (error as Error).message, status: worker.getStatus() },
        'worker shutdown forced: activities left running',
      );
    } finally {
      clearTimeout(slowTimer);
      stopping.removeEventListener('abort', onStopping);
    }
  } finally {
    await clientConnection?.close().catch(() => undefined);
    await connection.close().catch(() => undefined);
  }
}

main()
  .finally(closeKustomizeRenderers)
  .then(
    () => process.exit(0),
    (error: unknown) => {
      const explained = error instanceof ConfigError || error instanceof WorkflowCodeError;
      logger.fatal(explained ? error.message : error, 'worker failed');
      process.exit(1);
    },
  );
