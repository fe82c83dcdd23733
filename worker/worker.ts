import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { buildCluster, type BuildCluster } from '../common/kubernetes';
import type { Config } from '../common/config';
import { loadWorkflowBundle } from './bundle';
import { heartbeatWhileRunning } from './heartbeats';

/**
 * Sized for one worker carrying thousands of long-lived builds (OCA: 7,000 deployed) within
 * 1 GiB: memory is bounded by the sticky cache, not by the number of builds. Most builds sit
 * stopped for days with nothing to do; the cache holds the ones that move (initializing,
 * starting, stopping, started: a few hundred), and a build evicted from it replays its short
 * history (continue-as-new keeps it under 2,000 events) on its next event.
 */
export const WORKER_TUNING = {
  // Measured about 0.65 MiB of worker RSS per cached build over a 430 MiB base: 500 stays
  // well within 1 GiB and holds the active set (150 started, 20 initializing, transitions).
  maxCachedWorkflows: 500,
  // Workflow tasks are short and CPU-bound: more at once only queue on the cores.
  maxConcurrentWorkflowTaskExecutions: 20,
  // Watches (init job, ready replicas) hold an activity slot for as long as they wait: room
  // for max_initializing init jobs and a burst of starts beside the short Kubernetes calls.
  maxConcurrentActivityTaskExecutions: 200,
  maxConcurrentLocalActivityExecutions: 50,
  // A new build's first workflow task comes from the shared queue, and the SDK's default gives
  // that queue 2 of its 10 polls (the rest wait on the worker's sticky queue): a burst's first
  // tasks went out one poll round trip at a time, 3 s behind their webhooks (p50; issue 10's
  // burst). Half of 20 polls each, within the 20 task slots.
  workflowTaskPollerBehavior: { type: 'simple-maximum', maximum: 20 },
  nonStickyToStickyPollRatio: 0.5,
  // A worker that went away hands its builds' tasks back to the shared queue after 5 s, not 10.
  stickyQueueScheduleToStartTimeout: '5 seconds',
  // Heartbeats go out at most every 3 s, not every 0.8 × the heartbeat timeout (12 s of the
  // build's 15): a loaded worker that sent one late missed the timeout, and its activity was
  // retried elsewhere while it still ran (`npm run chaos`: no deploy ever completed).
  maxHeartbeatThrottleInterval: '3 seconds',
} as const;

/**
 * How the worker process is started, wherever it is (the image, deploy/worker.yaml, the
 * benchmark and chaos runs): within the 1 GiB its Deployment allows. Left to themselves, V8
 * sizes the heap from the machine's memory and grows it lazily, and glibc gives each of the
 * process's threads (the SDK's Rust runtime, libuv, V8's) an arena of its own that it hardly
 * returns: at 640 builds the main thread held 432 MiB of heap for 224 MiB used, the rest of
 * the process 420 MiB outside any JavaScript heap, and the worker's RSS was 997 MiB.
 */
export const WORKER_PROCESS = {
  nodeArgs: ['--max-old-space-size=384'],
  env: { MALLOC_ARENA_MAX: '2' },
} as const;

/** How long a shutdown may drain before the worker says what it still holds. */
export const SLOW_SHUTDOWN_MS = 10_000;

/**
 * The worker process's bound on a shutdown (SIGTERM). The SDK cancels running activities and
 * waits for them, and for its outstanding long polls; an activity that never ends would hold the
 * worker draining for good (seen once in CI). Past this, the process gives up (its activities
 * are retried elsewhere after their heartbeat timeout), before Kubernetes' default 30 s grace
 * period ends in a SIGKILL that would say nothing. Not for in-process workers (tests), whose
 * connection outlives them: a forced worker leaves it referenced.
 */
export const PROCESS_SHUTDOWN_FORCE_TIME = '25 seconds';

export async function createWorker(
  config: Config,
  connection: NativeConnection,
  cluster: BuildCluster = buildCluster(config),
  { workflowBundle, ...options }: Pick<WorkerOptions, 'shutdownForceTime' | 'workflowBundle'> = {},
): Promise<Worker> {
  return Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    workflowBundle: workflowBundle ?? (await loadWorkflowBundle()),
    activities: createActivities(config, cluster),
    interceptors: { activity: [heartbeatWhileRunning] },
    ...WORKER_TUNING,
    ...options,
  });
}
