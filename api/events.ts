import type { Response } from 'express';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import type { Bounded } from './backend';
import { matches, type BuildFilter } from '../common/build-list';
import { FRESH_FOR_MS, type BuildIndex } from '../common/build-index';
import type { BuildChanges } from '../common/change-feed';
import type { ListedBuild } from '../common/search-attributes';
import { HttpError } from './errors';
import { buildJson } from './views';

// Server-Sent Events of build changes, runboat's `/build-events`: the matching builds first,
// then `upd` and `del` events. The events are the changes the process's build index reads
// (common/build-index.ts), told to every subscriber as the index takes them: a page that asks
// for its builds on an event is answered with that change or a later state, and the process's
// visibility queries are the index's, one read at a time, at most one per interval for streams
// and requests together (each stream polling the feed of its own would read it again). The
// index is polled while there is a subscriber; the process keeps no state beyond them.
// Nothing costs the number of builds deployed (7,000 at OCA): a subscriber's first builds are
// the builds matching its filter (from the index), and each read lists only what changed since
// the previous one (the change feed), sending each subscriber what differs from what it was
// last sent. A subscriber that asks for the changes only (`changes_only=true`, the home page:
// it counts and lists repos, and with no filter the first builds would be every build) gets no
// first builds, and is told of every change, deletions included.
//
// The poller outlives the request that started it: each of its calls takes a deadline of its
// own (one inherited from that request would expire, and every later poll with it).

export const BUILD_EVENTS_POLL_INTERVAL_MS = FRESH_FOR_MS;
const KEEPALIVE_MS = 15_000;
const STREAMS_FULL_RETRY_AFTER_SECONDS = 30;

export type EventFilter = Omit<BuildFilter, 'status' | 'statuses' | 'slug'>;

interface Subscriber {
  filter: EventFilter;
  response: Response;
  /** Set once it has its first builds: from then on it gets every change. */
  live: boolean;
  /** Asked for no first builds, only what changes (and so every deletion). */
  changesOnly: boolean;
  /**
   * What it was last sent of each build (`fingerprint`, undefined for a deletion) and when: a
   * change it has seen is not sent again. A subscriber with first builds keeps the builds it
   * shows; a changes-only one needs an entry only while the feed's lookback can list it again.
   */
  sent: Map<string, { fingerprint: string | undefined; at: number }>;
  keepalive?: NodeJS.Timeout;
}

/** `listed`: how many builds a read of the change feed returned. */
export type EventsPollObserver = (outcome: 'ok' | 'failed', listed?: number) => void;

export class BuildEvents {
  private readonly subscribers = new Set<Subscriber>();
  private timer: NodeJS.Timeout | undefined;
  private stopListening: (() => void) | undefined;
  private pollInFlight = false;
  private failedPollsInARow = 0;

  constructor(
    private readonly config: Config,
    private readonly bounded: Bounded,
    /** Where a subscriber's first builds and every change come from. */
    private readonly index: BuildIndex,
    /** Told of every read of the change feed while streams are open (metrics; tests count them). */
    private readonly observePoll: EventsPollObserver = () => {},
  ) {}

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Whether it polls, or a poll is still finishing. */
  get active(): boolean {
    return this.timer !== undefined || this.pollInFlight;
  }

  /**
   * Streams to `response` until the client leaves; rejects (before any byte is sent) when the
   * builds cannot be listed. `changesOnly`: no first builds, only the changes from now on (the
   * index's next read lists those since its previous read, up to a lookback before).
   */
  async subscribe(filter: EventFilter, response: Response, changesOnly = false): Promise<void> {
    // Each stream holds a socket and what it was sent of its builds: a crowd of them (or one
    // client opening them in a loop) must not take the process's memory.
    if (this.subscribers.size >= this.config.maxEventStreams) {
      throw new HttpError(
        503,
        `this API process serves ${this.config.maxEventStreams} build-event streams already (RUNBOAT_MAX_EVENT_STREAMS); retry later`,
        { 'retry-after': String(STREAMS_FULL_RETRY_AFTER_SECONDS) },
      );
    }
    const subscriber: Subscriber = { filter, response, live: false, changesOnly, sent: new Map() };
    // Counted before its builds load, so that leaving meanwhile stops the poller too.
    this.subscribers.add(subscriber);
    response.on('close', () => this.leave(subscriber));
    // Polling from before the list: a change made while it loads is in the next polls.
    this.startPolling();
    let builds: ListedBuild[] = [];
    try {
      if (!changesOnly)
        builds = await this.observed(
          () => this.index.list(filter),
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
    this.stopListening = this.index.onChanges((changes) => this.tell(changes));
    this.timer = setInterval(() => void this.poll(), BUILD_EVENTS_POLL_INTERVAL_MS);
  }

  private stopPolling(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.stopListening?.();
    this.stopListening = undefined;
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

  /**
   * Has the index read the changes, unless a request had it read them less than half an
   * interval ago: either way they come to `tell`.
   */
  private async poll(): Promise<void> {
    if (this.pollInFlight) return;
    this.pollInFlight = true;
    try {
      await this.bounded(() => this.index.refresh(BUILD_EVENTS_POLL_INTERVAL_MS / 2));
      if (this.failedPollsInARow > 0) {
        logger.info({ failedPolls: this.failedPollsInARow }, 'build events: visibility reachable again');
        this.failedPollsInARow = 0;
      }
    } catch (error) {
      this.observePoll('failed');
      // Once per outage, not once per poll: an outage must not flood the logs.
      if (this.failedPollsInARow++ === 0) {
        logger.warn({ err: error }, 'build events: polling visibility failed; retrying until it answers');
      }
    } finally {
      this.pollInFlight = false;
    }
  }

  /** Sends each live subscriber the changes of one read of the index. */
  private tell({ changed, gone }: BuildChanges): void {
    this.observePoll('ok', changed.length + gone.length);
    // Past twice the lookback, no read lists again what a changes-only subscriber was sent.
    const forgetBefore = Date.now() - 2 * this.index.lookbackMs;
    for (const subscriber of this.subscribers) {
      if (!subscriber.live) continue; // its first builds come from this read or a later one
      for (const build of changed) {
        if (matches(subscriber.filter, build)) this.send(subscriber, 'upd', build);
      }
      for (const build of gone) {
        if (matches(subscriber.filter, build)) this.send(subscriber, 'del', build);
      }
      if (subscriber.changesOnly) {
        for (const [name, { at }] of subscriber.sent) if (at < forgetBefore) subscriber.sent.delete(name);
      }
    }
  }

  /**
   * Sends `build` unless the subscriber was last sent exactly this; a deletion only of a build
   * it shows, or, changes-only, of one it was not told of yet.
   */
  private send(subscriber: Subscriber, event: 'upd' | 'del', build: ListedBuild): void {
    const fingerprint = event === 'del' ? undefined : JSON.stringify(build);
    const last = subscriber.sent.get(build.name);
    if (last ? last.fingerprint === fingerprint : event === 'del' && !subscriber.changesOnly) return;
    if (event === 'del' && !subscriber.changesOnly) subscriber.sent.delete(build.name);
    else subscriber.sent.set(build.name, { fingerprint, at: Date.now() });
    subscriber.response.write(`data: ${JSON.stringify({ event, build: buildJson(this.config, build) })}\n\n`);
  }
}
