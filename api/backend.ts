import { InterceptingCall, Metadata, status as grpcStatus, type NextCall } from '@grpc/grpc-js';
import {
  defaultGrpcRetryOptions,
  makeGrpcRetryInterceptor,
  type Client,
  type Connection,
  type ConnectionOptions,
} from '@temporalio/client';
import { TEMPORAL_BACKOFF } from '../common/retry';

/**
 * How long the backend calls of one request may take together: past it the client gets 503,
 * not a hang. Below GitHub's 10 s webhook timeout, with room for the rest of the request.
 */
export const BACKEND_TIMEOUT_MS = 8_000;

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

/**
 * Runs one step of a request's work with `ms` for it, but never past the deadline the request
 * already has: the steps of a command (a query, then an update, then a signal) fit together in
 * the request's budget instead of each adding its own.
 */
export function withinDeadline<T>(client: Client, ms: number, work: () => Promise<T>): Promise<T> {
  // A client on another kind of connection (a test environment's) has no deadline to keep.
  const storage = (client.connection as Partial<Connection>).callContextStorage;
  const outer = storage?.getStore()?.deadline;
  const own = Date.now() + ms;
  return client.withDeadline(outer === undefined ? own : Math.min(own, new Date(outer).getTime()), work);
}

type Interceptor = NonNullable<ConnectionOptions['interceptors']>[number];

let rateLimitRefusals = 0;

/**
 * How many of this process's calls Temporal refused past a rate limit (RESOURCE_EXHAUSTED,
 * most often the namespace's visibility queries: `frontend.namespaceRPS.visibility`), each
 * asked again about 1.7 s later or failed: the one sign of that wait, which the client's
 * retries otherwise hide (`runboat_temporal_rate_limited_total`).
 */
export function temporalRateLimitRefusals(): number {
  return rateLimitRefusals;
}

/**
 * The Temporal SDK's retries of an unavailable server, that give up when the next attempt
 * would start past the call's deadline. The SDK's own wait up to 5 s between attempts whatever
 * the deadline, so a request bounded to 8 s answered its 503 after up to 13 s.
 */
export function retriesWithinDeadline(): Interceptor {
  const retry = defaultGrpcRetryOptions();
  return (options, nextCall) => {
    const deadline = options.deadline === undefined ? Infinity : new Date(options.deadline).getTime();
    let delay = 0;
    return makeGrpcRetryInterceptor({
      retryableDecider: (attempt, status) => {
        if (status.code === grpcStatus.RESOURCE_EXHAUSTED) rateLimitRefusals++;
        delay = retry.delayFunction(attempt, status);
        return retry.retryableDecider(attempt, status) && Date.now() + delay < deadline;
      },
      delayFunction: () => delay,
    })(options, endedWhenClosed(nextCall));
  };
}

/**
 * `nextCall`, except that on a closed connection it ends the call CANCELLED. The SDK starts a
 * retry from a timer: one still waiting when its connection closes (a call that outlived its
 * request while Temporal was unreachable) would otherwise throw gRPC's "Channel has been shut
 * down" from that timer, an uncaught exception in whatever process goes on after the close.
 */
function endedWhenClosed(nextCall: NextCall): NextCall {
  return (options) => {
    try {
      return nextCall(options);
    } catch (error) {
      return new InterceptingCall(endedCall(`connection closed: ${(error as Error).message}`));
    }
  };
}

function endedCall(details: string): ConstructorParameters<typeof InterceptingCall>[0] {
  return {
    start(_metadata, listener) {
      process.nextTick(() =>
        listener?.onReceiveStatus?.({ code: grpcStatus.CANCELLED, details, metadata: new Metadata() }),
      );
    },
    cancelWithStatus: () => undefined,
    getPeer: () => '',
    sendMessageWithContext: () => undefined,
    sendMessage: () => undefined,
    startRead: () => undefined,
    halfClose: () => undefined,
    getAuthContext: () => null,
  };
}

/** How the API connects to Temporal (`api/main.ts`; tests of its deadlines connect alike). */
export function apiConnectionOptions(address: string): ConnectionOptions {
  return {
    address,
    // gRPC reconnects on its own, but by default backs off up to 2 minutes between attempts:
    // capped here like the worker's, so that /readyz turns 200 soon after Temporal is back.
    channelArgs: {
      'grpc.initial_reconnect_backoff_ms': TEMPORAL_BACKOFF.initialMs,
      'grpc.max_reconnect_backoff_ms': TEMPORAL_BACKOFF.maxMs,
    },
    interceptors: [retriesWithinDeadline()],
  };
}
