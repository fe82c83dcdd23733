import { describe, expect, it, vi } from 'vitest';
import { logger } from '../common/logger';
import { backoffDelay, isTemporalUnreachable, retryWithBackoff, TEMPORAL_BACKOFF } from '../common/retry';

// How the worker and API tell an outage (waited out) from a fatal error, and how they wait.

describe('backoffDelay', () => {
  it('doubles from 1 s and stays at 15 s', () => {
    const delays = [1, 2, 3, 4, 5, 6, 100].map((failures) => backoffDelay(TEMPORAL_BACKOFF, failures));
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
  });
});

describe('isTemporalUnreachable', () => {
  const named = (name: string, message: string) => Object.assign(new Error(message), { name });
  it.each([
    ['the native connection refused', named('TransportError', 'tcp connect error, 127.0.0.1:7233')],
    [
      'a gRPC UNAVAILABLE',
      Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 }),
    ],
    ['a gRPC deadline', Object.assign(new Error('4 DEADLINE_EXCEEDED'), { code: 4 })],
    ['a poll that gave up', new Error('Poll failure: status: Unavailable, message: "tcp connect error"')],
    [
      'a connect failure behind a ServiceError',
      new Error('Failed to connect to Temporal server', {
        cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 14 }),
      }),
    ],
  ])('is true for %s', (_what, error) => {
    expect(isTemporalUnreachable(error)).toBe(true);
  });

  it.each([
    ['an unknown namespace', Object.assign(new Error('Namespace no-such is not found.'), { code: 5 })],
    ['a permission error', Object.assign(new Error('Request unauthorized.'), { code: 7 })],
    ['a bundling error', new Error("Module not found: Can't resolve './workflows'")],
    ['not an error', undefined],
  ])('is false for %s', (_what, error) => {
    expect(isTemporalUnreachable(error)).toBe(false);
  });
});

describe('retryWithBackoff', () => {
  const fast = { initialMs: 1, maxMs: 4 };

  it('retries until the attempt succeeds, logging each failure once with the next delay', async () => {
    const warn = vi.spyOn(logger, 'warn').mockImplementation(() => undefined);
    try {
      let calls = 0;
      const value = await retryWithBackoff(
        'connecting',
        async () => {
          calls += 1;
          if (calls < 4) throw new Error(`refused ${calls}`);
          return 'up';
        },
        { backoff: fast },
      );
      expect(value).toBe('up');
      expect(warn.mock.calls.map(([fields]) => fields)).toEqual([
        { err: 'refused 1', attempt: 1, nextDelayMs: 1 },
        { err: 'refused 2', attempt: 2, nextDelayMs: 2 },
        { err: 'refused 3', attempt: 3, nextDelayMs: 4 },
      ]);
    } finally {
      warn.mockRestore();
    }
  });

  it('throws at once what is not retryable, and stops when aborted', async () => {
    const fatal = new Error('bad configuration');
    await expect(
      retryWithBackoff('connecting', () => Promise.reject(fatal), { backoff: fast, retryable: () => false }),
    ).rejects.toBe(fatal);
    const stopping = new AbortController();
    stopping.abort();
    await expect(
      retryWithBackoff('connecting', () => Promise.resolve(1), { signal: stopping.signal }),
    ).rejects.toThrow();
  });
});
