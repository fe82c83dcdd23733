import type { Client } from '@temporalio/client';

/** How long any one backend call of a request may take: past it the client gets 503, not a hang. */
export const BACKEND_TIMEOUT_MS = 10_000;

export type Bounded = <T>(work: () => Promise<T>) => Promise<T>;

/**
 * Runs Temporal calls under a deadline computed at the moment of each call. The deadline lives
 * in async context: timers and promises created inside `work` inherit it, so anything that
 * outlives one request (a poller, a stream) must take its own deadline per call, never reuse
 * the request's.
 */
export function boundedCalls(client: Client, timeoutMs = BACKEND_TIMEOUT_MS): Bounded {
  return (work) => client.withDeadline(Date.now() + timeoutMs, work);
}
