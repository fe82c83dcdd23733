import type { Client } from '@temporalio/client';
import type { Response } from 'express';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import type { Bounded } from './backend';
import { HttpError } from './errors';
import { listBuildChanges, listBuilds, type BuildFilter, type ListedBuild } from './build-client';
import { buildJson } from './views';

// Server-Sent Events of build changes, runboat's `/build-events`: the matching builds first,
// then `upd` and `del` events. One poll of Temporal visibility per API process feeds every
// subscriber, and only while there is one; the process keeps no state beyond its subscribers.
// Nothing costs the number of builds deployed (7,000 at OCA): a subscriber's first builds are
// a list of the builds matching its filter, and each poll lists only what changed since the
// last successful one (`listBuildChanges`), sending each subscriber what differs from what it
// was last sent.
//
// The poller outlives the request that started it: each of its calls takes a deadline of its
// own (one inherited from that request would expire, and every later poll with it).

export const BUILD_EVENTS_POLL_INTERVAL_MS = 400;
/**
 * How far before its last successful poll a poll looks: a change is stamped with its workflow
 * task's start (on the Temporal server's clock) and becomes visible when the task completes,
 * up to a task timeout (10 s) later, plus visibility's lag and clock skew between machines.
 * Changes seen twice are sent once (the fingerprint), so the overlap costs only a few rows.
 */
export const BUILD_EVENTS_LOOKBACK_MS = 60_000;
const KEEPALIVE_MS = 15_000;
const STREAMS_FULL_RETRY_AFTER_SECONDS = 30;

export type EventFilter = Omit<BuildFilter, 'status'>;

interface Subscriber {
  filter: EventFilter;
  response: Response;
  /** Set once it has its first builds: from then on it gets every change. */
  live: boolean;
  /** What it was last sent of each build it shows: a change it has seen is not sent again. */
  sent: Map<string, string>;
  keepalive?: NodeJS.Timeout;
}

export function matches(filter: EventFilter, build: ListedBuild): boolean {
  const { repo, target_branch, pr } = build.commit;
  return (
    (!filter.repo || repo === filter.repo.toLowerCase()) &&
    (!filter.target_branch || target_branch === filter.target_branch) &&
    (!filter.branch || (target_branch === filter.branch && pr === null)) &&
    (filter.pr === undefined || pr === filter.pr) &&
    (!filter.name || build.name === filter.name)
  );
}

/** `listed`: how many builds the poll's visibility queries returned. */
export type EventsPollObserver = (outcome: 'ok' | 'failed', listed?: number) => void;

export class BuildEvents {
  private readonly subscribers = new Set<Subscriber>();
  /** When the last successful poll (or the poller's start) began, on this process's clock. */
  private lastPolled = 0;
  private timer: NodeJS.Timeout | undefined;
  private pollInFlight = false;
  private failedPollsInARow = 0;

  constructor(
    private readonly config: Config,
    private readonly client: Client,
    private readonly bounded: Bounded,
    /** Told of every visibility poll (metrics; tests count them). */
    private readonly observePoll: EventsPollObserver = () => {},
    private readonly lookbackMs = BUILD_EVENTS_LOOKBACK_MS,
  ) {}

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Whether it polls, or a poll is still finishing. */
  get active(): boolean {
    return this.timer !== undefined || this.pollInFlight;
  }

  /** Streams to `response` until the client leaves; rejects (before any byte is sent) when the
   * builds cannot be listed. */
  async subscribe(filter: EventFilter, response: Response): Promise<void> {
    // Each stream holds a socket and what it was sent of its builds: a crowd of them (or one
    // client opening them in a loop) must not take the process's memory.
    if (this.subscribers.size >= this.config.maxEventStreams) {
      throw new HttpError(
        503,
        `this API process serves ${this.config.maxEventStreams} build-event streams already (RUNBOAT_MAX_EVENT_STREAMS); retry later`,
        { 'retry-after': String(STREAMS_FULL_RETRY_AFTER_SECONDS) },
      );
    }
    const subscriber: Subscriber = { filter, response, live: false, sent: new Map() };
    // Counted before its builds load, so that leaving meanwhile stops the poller too.
    this.subscribers.add(subscriber);
    response.on('close', () => this.leave(subscriber));
    // Polling from before the list: a change made while it loads is in the next polls.
    this.startPolling();
    let builds: ListedBuild[];
    try {
      builds = await this.observed(
        () => listBuilds(this.client, this.config, filter),
        (listed) => listed.length,
      );
    } catch (error) {
      this.leave(subscriber);
      throw error;
    }
    if (!this.subscribers.has(subscriber)) return; // left while its builds loaded
    response.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // EventSource's `open` fires on the headers: send them now, even when no build matches.
    response.flushHeaders();
    for (const build of builds) this.send(subscriber, 'upd', build);
    subscriber.live = true;
    subscriber.keepalive = setInterval(() => response.write(': keepalive\n\n'), KEEPALIVE_MS);
  }

  close(): void {
    for (const subscriber of this.subscribers) {
      clearInterval(subscriber.keepalive);
      subscriber.response.end();
    }
    this.subscribers.clear();
    this.stopPolling();
  }

  private leave(subscriber: Subscriber): void {
    clearInterval(subscriber.keepalive);
    this.subscribers.delete(subscriber);
    if (this.subscribers.size === 0) this.stopPolling();
  }

  private startPolling(): void {
    if (this.timer) return;
    this.lastPolled = Date.now();
    this.timer = setInterval(() => void this.poll(), BUILD_EVENTS_POLL_INTERVAL_MS);
  }

  private stopPolling(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async observed<T>(list: () => Promise<T>, count: (result: T) => number): Promise<T> {
    let result: T;
    try {
      result = await this.bounded(list);
    } catch (error) {
      this.observePoll('failed');
      throw error;
    }
    this.observePoll('ok', count(result));
    return result;
  }

  private async poll(): Promise<void> {
    if (this.pollInFlight) return;
    this.pollInFlight = true;
    const timer = this.timer;
    try {
      const began = Date.now();
      // From the last success, however long ago: changes made during an outage are not lost.
      const since = new Date(this.lastPolled - this.lookbackMs);
      const { changed, ended } = await this.observed(
        () => listBuildChanges(this.client, this.config, since),
        (changes) => changes.changed.length + changes.ended.length,
      );
      if (this.timer !== timer) return; // stopped while it ran: a new start begins its own window
      const running = new Set(changed.map((build) => build.name));
      for (const subscriber of this.subscribers) {
        if (!subscriber.live) continue; // the next polls still hold these changes
        for (const build of changed) {
          if (matches(subscriber.filter, build)) this.send(subscriber, 'upd', build);
        }
        // An ended run whose build runs again (redeployed under the same name) is no deletion.
        for (const build of ended) {
          if (subscriber.sent.has(build.name) && !running.has(build.name))
            this.send(subscriber, 'del', build);
        }
      }
      this.lastPolled = began;
      if (this.failedPollsInARow > 0) {
        logger.info({ failedPolls: this.failedPollsInARow }, 'build events: visibility reachable again');
        this.failedPollsInARow = 0;
      }
    } catch (error) {
      // Once per outage, not once per poll: an outage must not flood the logs.
      if (this.failedPollsInARow++ === 0) {
        logger.warn({ err: error }, 'build events: polling visibility failed; retrying until it answers');
      }
    } finally {
      this.pollInFlight = false;
    }
  }

  /** Sends `build` unless the subscriber was last sent exactly this. */
  private send(subscriber: Subscriber, event: 'upd' | 'del', build: ListedBuild): void {
    const fingerprint = event === 'del' ? undefined : JSON.stringify(build);
    if (event === 'upd' && subscriber.sent.get(build.name) === fingerprint) return;
    if (fingerprint) subscriber.sent.set(build.name, fingerprint);
    else subscriber.sent.delete(build.name);
    subscriber.response.write(`data: ${JSON.stringify({ event, build: buildJson(this.config, build) })}\n\n`);
  }
}
