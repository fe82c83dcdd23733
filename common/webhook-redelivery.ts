import type { WebhookDelivery } from './github';

// GitHub does not send a failed webhook delivery again by itself: a push or a pull request that
// came while the API was down, or could not reach Temporal, would never get its build. The
// redelivery schedule lists the configured webhooks' recent deliveries and asks GitHub to send
// again each event whose attempts all failed in a way that may pass.

/** What one run did; the next run lists from the time this one listed up to (less an overlap). */
export interface WebhookRedelivery {
  /** The deliveries listed are those made in this span (ISO times). */
  listedFrom: string;
  listedTo: string;
  listed: number;
  /** Events asked again. */
  redelivered: number;
  /** Asked again, and GitHub refused (a delivery older than it redelivers, say). */
  refused: number;
}

const MINUTE_MS = 60_000;
/** With no earlier run to go on (the first one, or after several failed): the last hour. */
const FIRST_LOOKBACK_MS = 60 * MINUTE_MS;
/** GitHub redelivers the last 3 days' deliveries. */
const LONGEST_LOOKBACK_MS = 3 * 24 * 60 * MINUTE_MS;
/** A delivery made while the previous run was listing is listed again: attempts are idempotent. */
const OVERLAP_MS = 2 * MINUTE_MS;

/** Where this run's listing starts (ms), after `previous` (the last finished run's result). */
export function listingStart(previous: WebhookRedelivery | undefined, now: number): number {
  const start = previous ? Date.parse(previous.listedTo) - OVERLAP_MS : now - FIRST_LOOKBACK_MS;
  return Math.max(start, now - LONGEST_LOOKBACK_MS);
}

/**
 * The service's answer may be different next time: none at all (GitHub could not connect, or
 * timed out), or it could not take the event then (5xx: Temporal unreachable; 408, 429). Its
 * other answers (a bad signature: 401; a payload it cannot read: 400) would be the same.
 */
const mayPass = (statusCode: number) =>
  statusCode === 0 || statusCode >= 500 || statusCode === 408 || statusCode === 429;

/** Per event (guid): its newest attempt, when none succeeded and that one failed in a way that may pass. */
export function deliveriesToRedeliver(deliveries: WebhookDelivery[]): WebhookDelivery[] {
  const newest = new Map<string, WebhookDelivery>();
  const succeeded = new Set<string>();
  for (const delivery of deliveries) {
    if (delivery.status_code >= 200 && delivery.status_code < 300) succeeded.add(delivery.guid);
    const seen = newest.get(delivery.guid);
    if (!seen || Date.parse(delivery.delivered_at) > Date.parse(seen.delivered_at))
      newest.set(delivery.guid, delivery);
  }
  return [...newest.values()].filter(
    (delivery) => !succeeded.has(delivery.guid) && mayPass(delivery.status_code),
  );
}
