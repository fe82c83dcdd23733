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

export const heartbeatWhileRunning: ActivityInterceptorsFactory = (context) => ({
  inbound: {
    async execute(input, next) {
      const timeoutMs = context.info.heartbeatTimeoutMs;
      if (!timeoutMs || SELF_HEARTBEATING.has(context.info.activityType)) return next(input);
      const timer = setInterval(() => context.heartbeat(), Math.min(INTERVAL_MS, timeoutMs / 3));
      try {
        return await next(input);
      } finally {
        clearInterval(timer);
      }
    },
  },
});
