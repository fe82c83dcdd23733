import type { Client } from '@temporalio/client';
import { listBuilds, matches, runboatOrder, type BuildFilter } from './build-list';
import { CHANGE_FEED_LOOKBACK_MS, ChangeFeed, type BuildChanges } from './change-feed';
import type { Config } from './config';
import { logger } from './logger';
import type { ListedBuild } from './search-attributes';
import { BUILD_STATUSES, type BuildStatus, type InitStatus } from './types';

// What the API shows of the builds (`/api/v1/status`, `/repos`, `GET /builds`, the first events
// of `/build-events`, the home page and boards, `/metrics`), and where eviction picks its
// candidates, without a cost per deployed build on each request or run. Listing every build to
// collect repos cost ~0.8 ms a build (5 s at OCA's 7,000); visibility cannot count by repo
// (its GROUP BY takes ExecutionStatus only), and its
// counts by status are not constant either: SQL visibility counts the matching rows, about
// 70 ms per 1,000 builds for /status's seven counts on the dev server (README, "The API at N
// builds"), and a list costs ~0.7 ms per build listed (100 ms for a 150-build board). So each
// API process keeps an index of every running build as visibility lists it: listed once (at
// start, or by the first request), then kept current from the change feed, which lists only
// the builds that changed (each change of a build stamps `RunboatUpdated`; builds whose run
// predates that stamp were in the first list, and stamp their next change) and those that
// ended.
//
// The feed is read for requests, and polled for `/build-events` while a stream is open (its
// events are the changes each read finds: see `onChanges`); never otherwise, so an idle API
// costs nothing. One read at a time, shared by every request that arrived before it began or
// less than `FRESH_FOR_MS` after, so requests and streams together cost at most about one read
// per `FRESH_FOR_MS` whatever their number, and a read costs
// the changes since the previous one (a few rows, two indexed visibility queries, when little
// changes). Temporal limits a namespace's visibility queries (`frontend.namespaceRPS.visibility`,
// 10 a second per frontend by default; the dev server took 120): a query past the limit is
// refused, and the client asks again 1.7 s later. A read per request put one request in 30 of
// a sequence there (README, "The API's visibility reads, bounded").
// A cache of the full list with a TTL would instead list every build once per TTL, seconds
// of some request's time, or O(builds) per interval if refreshed in the background.
//
// Staleness bound: an answer reflects visibility as of `FRESH_FOR_MS` before the request's
// arrival or later, as fresh as a `/build-events` stream's poll (visibility's own lag aside), so
// API processes, each with its own index, agree as their lists do within that; and a page that
// refreshes on a `/build-events` change sees it (the change was read before the event was sent). A
// change that visibility recorded more than 5 s after its stamp (see `ChangeFeed`) shows up to
// 15 s later than that (the next late read that looks at its stamp), and so does the end of a
// build whose workflow ended otherwise than by an undeploy (terminated, failed: see
// `listBuildChanges`).
// Decisions never rest on it: eviction picks candidates from it and then gives each build an
// order that the build takes only in the state it was picked in; init slots never read it.

/**
 * A read's own deadline. The first list takes seconds at 7,000 builds, and a read after a
 * burst lists every build changed within the lookback: a request's deadline would cut them
 * short, and a read cut short moves nothing, so the next one would list more still. Requests
 * wait for a read at most their own deadline (`waitMs`), then answer 503 while it goes on.
 */
const READ_TIMEOUT_MS = 120_000;
/**
 * How long a read answers the requests that arrive after it began: the interval of the
 * `/build-events` polls, so an answer is as fresh as a stream's events.
 */
export const FRESH_FOR_MS = 400;
/** When the namespace does not say its retention: Temporal's smallest (for local namespaces). */
const MIN_RETENTION_MS = 60 * 60_000;

/**
 * Whether an index has disagreed with visibility's counts by the same amount for longer than
 * `forMs`, across the checks made of it: lag makes them differ for a moment, by amounts that
 * change from check to check while builds change; a change the index never read makes them
 * differ for good, by the same amount once builds stop changing.
 */
export class LastingDisagreement {
  private current: { difference: string; since: number } | undefined;

  constructor(private readonly forMs: number) {}

  /**
   * Records a check of `indexed` against `counted` (the same counts, in the same order); true
   * once they have differed by the same amounts for longer than `forMs`, and then starts over.
   */
  check(indexed: readonly number[], counted: readonly number[], now = Date.now()): boolean {
    const difference = indexed.map((count, i) => count - counted[i]).join();
    if (indexed.every((count, i) => count === counted[i])) this.current = undefined;
    else if (this.current?.difference !== difference) this.current = { difference, since: now };
    else if (now - this.current.since > this.forMs) {
      this.current = undefined;
      return true;
    }
    return false;
  }
}

/**
 * Told of each read of visibility the index makes: every build (`list`), the changes
 * (`changes`), or a late read beside them (`late`).
 */
export type IndexReadObserver = (kind: 'list' | 'changes' | 'late', outcome: 'ok' | 'failed') => void;

/**
 * Which read the index holds each build as, so that a late read (made beside the others, and
 * answered after reads that began later) does not undo what they found: the read that began
 * last wins. A build removed is remembered as long as a read can last, for a late read that
 * lists it running from before its end.
 */
export class ReadOrder {
  private readonly present = new Map<string, number>();
  private readonly removed = new Map<string, number>();

  /** Whether a read that began at `began` is no older than the one the index holds `name` as. */
  newest(name: string, began: number): boolean {
    return began >= (this.present.get(name) ?? this.removed.get(name) ?? -Infinity);
  }

  set(name: string, began: number): void {
    this.removed.delete(name);
    this.present.set(name, began);
  }

  remove(name: string, began: number): void {
    this.present.delete(name);
    this.removed.set(name, began);
  }

  /** Forgets the removals of reads that began before `before`: no read still under way did. */
  forgetRemovedBefore(before: number): void {
    for (const [name, began] of this.removed) if (began < before) this.removed.delete(name);
  }

  clear(): void {
    this.present.clear();
    this.removed.clear();
  }
}

/** Told of what each read of the index found changed; see `BuildIndex.onChanges`. */
export type ChangesListener = (changes: BuildChanges) => void;

/** Visibility did not list the builds within a reader's wait: the API's 503. */
export class BuildsNotListedError extends Error {}

/** How many running builds have each status, and each init status while initializing. */
export interface BuildCounts {
  statuses: Record<BuildStatus, number>;
  toInitialize: number;
  initializing: number;
}

export class BuildIndex {
  private readonly builds = new Map<string, ListedBuild>();
  private readonly buildsOfRepo = new Map<string, Map<string, ListedBuild>>();
  private readonly statuses = Object.fromEntries(BUILD_STATUSES.map((s) => [s, 0])) as Record<
    BuildStatus,
    number
  >;
  private readonly initializing: Record<InitStatus, number> = {
    todo: 0,
    started: 0,
    succeeded: 0,
    failed: 0,
  };
  private sortedRepos: string[] | undefined;
  private feed: ChangeFeed | undefined;
  private listedOnce = false;
  private readonly listeners = new Set<ChangesListener>();
  private readonly order = new ReadOrder();
  private lateRead: Promise<void> | undefined;
  /**
   * Past this without a read, the index lists every build again instead of reading the feed:
   * visibility forgets ended builds after the namespace's retention, and a deletion it forgot
   * would stay in the index for good. Half the retention, read at each full list.
   */
  private relistAfterMs = MIN_RETENTION_MS / 2;
  private update: Promise<void> | undefined;

  constructor(
    private readonly client: Client,
    private readonly config: Config,
    /** How long a request waits for the index, the first list included: its backend deadline. */
    private readonly waitMs: number,
    readonly lookbackMs = CHANGE_FEED_LOOKBACK_MS,
    private readonly observeRead: IndexReadObserver = () => {},
  ) {}

  /**
   * Calls `listener` with the changes each read finds from now on (a list of every build, after
   * the first, with how it differs from the index before it), right as the index takes them:
   * a request that arrives after the listener was told is answered with them. Returns the way
   * to stop.
   */
  onChanges(listener: ChangesListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the changes unless a read began less than `maxAgeMs` ago (what `/build-events` polls). */
  async refresh(maxAgeMs: number): Promise<void> {
    await this.fresh(maxAgeMs);
  }

  /** The repos with running builds, sorted, as visibility had them when asked or later. */
  async repos(): Promise<string[]> {
    await this.fresh();
    return (this.sortedRepos ??= [...this.buildsOfRepo.keys()].sort());
  }

  /**
   * The running builds that match `filter`, in runboat's ascending order, as `listBuilds`
   * gives them: all of a repo's builds, not all builds, are looked at for a repo's board.
   */
  async list(filter: BuildFilter = {}): Promise<ListedBuild[]> {
    await this.fresh();
    const candidates = filter.repo
      ? (this.buildsOfRepo.get(filter.repo.toLowerCase())?.values() ?? [])
      : this.builds.values();
    return runboatOrder(
      [...candidates].filter((build) => matches(filter, build)),
      'asc',
    );
  }

  /** The running builds' counts, as visibility had them when asked or later. */
  async counts(): Promise<BuildCounts> {
    await this.fresh();
    return {
      statuses: { ...this.statuses },
      toInitialize: this.initializing.todo,
      initializing: this.initializing.started,
    };
  }

  /**
   * Lists every build again at the next read: for a reader that found the index disagreeing
   * with visibility's counts for longer than the change feed looks back (a change visibility
   * recorded later than that is never read).
   */
  relist(): void {
    this.feed = undefined;
  }

  /** Whether a read is under way, a late one too (it may outlive the requests that waited for it). */
  get active(): boolean {
    return this.update !== undefined || this.lateRead !== undefined;
  }

  /** Lists every build now, so that the first request need not (at the process's start). */
  warm(): void {
    this.startUpdate().catch((error: unknown) =>
      logger.info({ err: error }, 'build index: first list failed; the next request tries again'),
    );
  }

  private async fresh(maxAgeMs = FRESH_FOR_MS): Promise<void> {
    const since = Date.now() - maxAgeMs;
    // A read in flight that began before that is too old: then the next one.
    while (!this.feed || this.feed.readAt < since) await this.waitForUpdate();
  }

  private async waitForUpdate(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new BuildsNotListedError(
              'Temporal did not list the builds in time (unreachable, or slow); try again in a moment',
            ),
          ),
        this.waitMs,
      );
    });
    try {
      await Promise.race([this.startUpdate(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One update at a time, shared by every request that waits for it. */
  private startUpdate(): Promise<void> {
    this.update ??= this.updateOnce().finally(() => (this.update = undefined));
    return this.update;
  }

  private async updateOnce(): Promise<void> {
    const began = Date.now();
    await this.client.withDeadline(began + READ_TIMEOUT_MS, () => this.read(began));
  }

  private async read(began: number): Promise<void> {
    const feed = this.feed && began - this.feed.readAt <= this.relistAfterMs ? this.feed : undefined;
    const kind = feed ? 'changes' : 'list';
    try {
      await (feed ? this.readChanges(feed, began) : this.listEveryBuild(began));
    } catch (error) {
      this.observeRead(kind, 'failed');
      throw error;
    }
    this.observeRead(kind, 'ok');
  }

  private async listEveryBuild(began: number): Promise<void> {
    // The feed starts before the list: a change made while it runs is in the next read.
    const feed = new ChangeFeed(this.client, this.config, this.lookbackMs, began);
    const [builds, retentionMs] = await Promise.all([
      listBuilds(this.client, this.config),
      this.retentionMs(),
    ]);
    this.relistAfterMs = retentionMs / 2;
    const before = new Map(this.builds);
    for (const name of [...this.builds.keys()]) this.remove(name);
    this.order.clear();
    for (const build of builds) {
      this.set(build);
      this.order.set(build.name, began);
    }
    this.feed = feed;
    // Nothing was told of before the first list: its builds are no change to anyone.
    if (this.listedOnce) this.tell(differences(before, this.builds));
    this.listedOnce = true;
  }

  private async readChanges(feed: ChangeFeed, began: number): Promise<void> {
    // Beside this read, not in it: a late read lists every change of the minute before this
    // read's window (after a mass eviction, hundreds of ended builds), which no request should
    // wait for.
    if (feed.lateReadDue && !this.lateRead)
      this.lateRead = this.readLate(feed).finally(() => (this.lateRead = undefined));
    this.take(await feed.read(), began);
  }

  private async readLate(feed: ChangeFeed): Promise<void> {
    const began = Date.now();
    let changes: BuildChanges;
    try {
      changes = await this.client.withDeadline(began + READ_TIMEOUT_MS, () => feed.readLate());
    } catch (error) {
      this.observeRead('late', 'failed');
      logger.info({ err: error }, 'build index: a late read failed; the next read starts another');
      return;
    }
    this.observeRead('late', 'ok');
    // Listed again since it began: what it found of every build is older than that list.
    if (feed !== this.feed) return;
    this.take(changes, began);
    this.order.forgetRemovedBefore(began - READ_TIMEOUT_MS);
  }

  /** Takes the changes a read that began at `began` found, but those a later read found since. */
  private take({ changed, gone }: BuildChanges, began: number): void {
    const taken: BuildChanges = {
      changed: changed.filter((build) => this.order.newest(build.name, began)),
      gone: gone.filter((build) => this.order.newest(build.name, began)),
    };
    for (const build of taken.changed) {
      this.set(build);
      this.order.set(build.name, began);
    }
    for (const build of taken.gone) {
      this.remove(build.name);
      this.order.remove(build.name, began);
    }
    this.tell(taken);
  }

  private tell(changes: BuildChanges): void {
    for (const listener of this.listeners) {
      try {
        listener(changes);
      } catch (error) {
        logger.warn({ err: error }, 'build index: a listener of its changes failed');
      }
    }
  }

  private async retentionMs(): Promise<number> {
    const { config } = await this.client.workflowService.describeNamespace({
      namespace: this.client.options.namespace,
    });
    const seconds = Number(config?.workflowExecutionRetentionTtl?.seconds ?? 0);
    return seconds > 0 ? seconds * 1000 : MIN_RETENTION_MS;
  }

  private set(build: ListedBuild): void {
    this.remove(build.name);
    this.builds.set(build.name, build);
    this.tally(build, 1);
    const repo = build.commit.repo;
    const ofRepo = this.buildsOfRepo.get(repo) ?? new Map<string, ListedBuild>();
    if (ofRepo.size === 0) {
      this.buildsOfRepo.set(repo, ofRepo);
      this.sortedRepos = undefined;
    }
    ofRepo.set(build.name, build);
  }

  private remove(name: string): void {
    const build = this.builds.get(name);
    if (!build) return;
    this.builds.delete(name);
    this.tally(build, -1);
    const ofRepo = this.buildsOfRepo.get(build.commit.repo);
    ofRepo?.delete(name);
    if (ofRepo?.size === 0) {
      this.buildsOfRepo.delete(build.commit.repo);
      this.sortedRepos = undefined;
    }
  }

  private tally({ status, init_status }: ListedBuild, by: 1 | -1): void {
    this.statuses[status] += by;
    if (status === 'initializing') this.initializing[init_status] += by;
  }
}

/** What a list of every build (`after`) says changed since the index held `before`. */
function differences(before: Map<string, ListedBuild>, after: Map<string, ListedBuild>): BuildChanges {
  const changed = [...after.values()].filter(
    (build) => JSON.stringify(build) !== JSON.stringify(before.get(build.name)),
  );
  const gone = [...before.values()].filter((build) => !after.has(build.name));
  return { changed, gone };
}
