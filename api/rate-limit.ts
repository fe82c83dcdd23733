import type { RequestHandler } from 'express';
import { HttpError } from './errors';

// Commands anyone may send (start, stop, reset of a build) are rate limited per build, before
// they reach Temporal: a flood costs the build's workflow nothing. Per API process; with n
// processes behind a balancer a build takes up to n times the rate, still bounded.

export interface RateLimit {
  /** Requests a key may make at once. */
  burst: number;
  /** Requests a key regains per second. */
  perSecond: number;
}

export const BUILD_COMMAND_RATE: RateLimit = { burst: 10, perSecond: 2 };

/** How many keys are remembered at most: the oldest are forgotten (they have refilled anyway). */
const MAX_KEYS = 10_000;

/**
 * `keyOf` answers undefined for a request that the route refuses anyway (a name that is no
 * build's): it passes unlimited, and hostile keys (5,000-character names) are never remembered.
 */
export function rateLimited(
  limit: RateLimit,
  keyOf: (request: Parameters<RequestHandler>[0]) => string | undefined,
): RequestHandler {
  const buckets = new Map<string, { tokens: number; at: number }>();
  return (request, response, next) => {
    const key = keyOf(request);
    if (key === undefined) {
      next();
      return;
    }
    const now = Date.now();
    const bucket = buckets.get(key) ?? { tokens: limit.burst, at: now };
    bucket.tokens = Math.min(limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * limit.perSecond);
    bucket.at = now;
    buckets.delete(key); // re-inserted last: the map's order is least recently used first
    buckets.set(key, bucket);
    if (buckets.size > MAX_KEYS) buckets.delete(buckets.keys().next().value as string);
    if (bucket.tokens < 1) {
      response.set('retry-after', String(Math.ceil((1 - bucket.tokens) / limit.perSecond)));
      throw new HttpError(429, 'too many requests for this build; try again later');
    }
    bucket.tokens -= 1;
    next();
  };
}
