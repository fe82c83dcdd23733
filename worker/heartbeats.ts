import type { ActivityInterceptorsFactory } from '@temporalio/worker';

// Heartbeats every activity the workflow gave a heartbeat timeout while it runs: a worker that
// dies (SIGKILL, out of memory) stops heartbeating, and Temporal retries its activities within
// that timeout instead of their start-to-close timeout.

/**
 * They heartbeat themselves, with details (a watch's resourceVersion) a bare heartbeat would
 * erase. Not `runInitJob`: it watches only once its Job is started, and a retry that finds no
 * resourceVersion lists the Job again, which is as right, only a call more.
 */
const SELF_HEARTBEATING = new Set(['waitForJob', 'waitForReadyReplicas']);
const INTERVAL_MS = 3_000;

/** The activities this process runs now, as `<type> of <workflow id>`, each with its count. */
const inFlight = new Map<string, number>();

/**
 * What a worker that takes long to drain still runs: its status counts activities, this names
 * them (a drain once outlived a test's 180 s hook on one heartbeating activity).
 */
export function activitiesInFlight(): string[] {
  return [...inFlight].map(([activity, count]) => (count > 1 ? `${activity} (${count})` : activity));
}

export const heartbeatWhileRunning: ActivityInterceptorsFactory = (context) => ({
  inbound: {
    async execute(input, next) {
      const activity = `${context.info.activityType} of ${context.info.workflowExecution?.workflowId ?? 'no workflow'}`;
      inFlight.set(activity, (inFlight.get(activity) ?? 0) + 1);
      const timeoutMs = context.info.heartbeatTimeoutMs;
      const timer =
        timeoutMs && !SELF_HEARTBEATING.has(context.info.activityType)
          ? setInterval(() => context.heartbeat(), Math.min(INTERVAL_MS, timeoutMs / 3))
          : undefined;
      try {
        return await next(input);
      } finally {
        clearInterval(timer);
        const left = (inFlight.get(activity) ?? 1) - 1;
        if (left > 0) inFlight.set(activity, left);
        else inFlight.delete(activity);
      }
    },
  },
});
