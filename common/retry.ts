import { setTimeout as sleep } from 'node:timers/promises';
import { logger } from './logger';

// Processes that wait for their backends instead of dying: a worker or API started before
// Temporal (or left running through an outage) retries with a capped backoff and proceeds
// once Temporal answers, so that a restart order or a server upgrade needs no babysitting.

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** 1 s, 2 s, 4 s, 8 s, then every 15 s. */
export const TEMPORAL_BACKOFF: Backoff = { initialMs: 1_000, maxMs: 15_000 };

/** The delay after the `failures`-th failure in a row (1-based): doubling, capped. */
export function backoffDelay(backoff: Backoff, failures: number): number {
  return Math.min(backoff.initialMs * 2 ** Math.min(failures - 1, 30), backoff.maxMs);
}

/**
 * Logs a failure once, at warn, with the delay before the next attempt, and waits that delay
 * (the `failures`-th in a row). Rejects at once if `signal` aborts (the process is stopping).
 */
export async function waitToRetry(
  what: string,
  error: unknown,
  failures: number,
  options: { backoff?: Backoff; signal?: AbortSignal } = {},
): Promise<void> {
  const nextDelayMs = backoffDelay(options.backoff ?? TEMPORAL_BACKOFF, failures);
  logger.warn(
    { err: errorMessage(error), attempt: failures, nextDelayMs },
    `${what} failed; retrying in ${nextDelayMs / 1000} s`,
  );
  await sleep(nextDelayMs, undefined, { signal: options.signal });
}

/**
 * Calls `attempt` until it resolves, waiting (`waitToRetry`) between failures. An error
 * `retryable` refuses (bad configuration, say) is thrown at once, and so is an abort of
 * `signal`.
 */
export async function retryWithBackoff<T>(
  what: string,
  attempt: () => Promise<T>,
  options: { backoff?: Backoff; retryable?: (error: unknown) => boolean; signal?: AbortSignal } = {},
): Promise<T> {
  for (let failures = 1; ; failures++) {
    options.signal?.throwIfAborted();
    try {
      const value = await attempt();
      if (failures > 1) logger.info({ attempts: failures }, `${what}: succeeded`);
      return value;
    } catch (error) {
      if (options.signal?.aborted || (options.retryable && !options.retryable(error))) throw error;
      await waitToRetry(what, error, failures, options);
    }
  }
}

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Whether `error` (or one of its causes) says Temporal could not be reached, as opposed to
 * Temporal answering that something is wrong (unknown namespace, bad request): the first is
 * waited out, the second is a configuration error that retrying cannot fix.
 */
export function isTemporalUnreachable(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const { name, code, message } = current as { name?: string; code?: unknown; message?: string };
    // The worker's native connection (Rust core): TransportError on connect, polls that gave up.
    if (name === 'TransportError') return true;
    // gRPC status codes of the client: 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED.
    if (code === 14 || code === 4) return true;
    if (
      typeof message === 'string' &&
      /transport error|tcp connect|connection refused|connection reset|broken pipe|status: unavailable|code: unavailable|\bunavailable\b|deadline exceeded|error trying to connect|failed to connect|h2 protocol error/i.test(
        message,
      )
    ) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
