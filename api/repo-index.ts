import type { Client } from '@temporalio/client';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import type { Bounded } from './backend';
import { listBuilds, type ListedBuild } from './build-client';
import { ChangeFeed } from './change-feed';
import { HttpError } from './errors';

// The repos that have builds (`GET /api/v1/repos`, the home page), without listing every build
// per request: that cost ~0.8 ms a build, 5 s at OCA's 7,000. Visibility cannot count by repo
// (its GROUP BY takes ExecutionStatus only), so each API process keeps an index of every
// running build's repo: listed once (at start, or by the first request), then kept current
// from the change feed, which lists only what changed. A build's repo never changes, so the
// index only adds builds that appear and drops builds that end.
//
// The feed is read when a request finds the index older than its maximum age, never on a
// timer: an idle API costs nothing, and a request costs the changes since the previous read.
// A cache of the full list with a TTL would instead list every build once per TTL, seconds
// of some request's time, or O(builds) per interval if refreshed in the background.
//
// Staleness bound: an answer reflects visibility as of at most `maxAgeMs` before its request
// arrived (plus visibility's own lag, the same for every reader), so API processes, each with
// its own index, agree within that bound.

/** How old an answer of `/repos` may be. */
export const REPO_INDEX_MAX_AGE_MS = 2_000;
/** The first list of every build takes seconds at 7,000 builds: more than a request may wait. */
const POPULATE_TIMEOUT_MS = 120_000;
/** When the namespace does not say its retention: Temporal's smallest (for local namespaces). */
const MIN_RETENTION_MS = 60 * 60_000;

export class RepoIndex {
  private readonly repoOf = new Map<string, string>();
  private readonly buildsOf = new Map<string, Set<string>>();
  private sorted: string[] | undefined;
  private feed: ChangeFeed | undefined;
  /**
   * Past this without a read, the index lists every build again instead of reading the feed:
   * visibility forgets ended builds after the namespace's retention, and a deletion it forgot
   * would stay in the index for good. Half the retention (a day by default), read at each list.
   */
  private relistAfterMs = MIN_RETENTION_MS / 2;
  private update: Promise<void> | undefined;

  constructor(
    private readonly client: Client,
    private readonly config: Config,
    private readonly bounded: Bounded,
    /** How long a request waits for the index, the first list included: its backend deadline. */
    private readonly waitMs: number,
    private readonly maxAgeMs = REPO_INDEX_MAX_AGE_MS,
    private readonly lookbackMs?: number,
  ) {}

  /** The repos with running builds, sorted, as of at most `maxAgeMs` ago. */
  async repos(): Promise<string[]> {
    const arrived = Date.now();
    // A read already in flight may have begun too long before this request: then one more.
    while (!this.feed || arrived - this.feed.readAt > this.maxAgeMs) await this.waitForUpdate();
    return (this.sorted ??= [...this.buildsOf.keys()].sort());
  }

  /** Lists every build now, so that the first request need not (at the process's start). */
  warm(): void {
    this.startUpdate().catch((error: unknown) =>
      logger.info({ err: error }, 'repo index: first list failed; the next request tries again'),
    );
  }

  private async waitForUpdate(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new HttpError(
              503,
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
    if (!this.feed || began - this.feed.readAt > this.relistAfterMs) {
      // The feed starts before the list: a change made while it runs is in the next read.
      const feed = new ChangeFeed(this.client, this.config, this.lookbackMs, began);
      // A deadline of its own: the first request's would cut a long list short every time.
      const [builds, retentionMs] = await this.client.withDeadline(began + POPULATE_TIMEOUT_MS, () =>
        Promise.all([listBuilds(this.client, this.config), this.retentionMs()]),
      );
      this.relistAfterMs = retentionMs / 2;
      this.repoOf.clear();
      this.buildsOf.clear();
      for (const build of builds) this.add(build);
      this.feed = feed;
    } else {
      const feed = this.feed;
      const { changed, gone } = await this.bounded(() => feed.read());
      for (const build of changed) this.add(build);
      for (const build of gone) this.remove(build.name);
    }
    this.sorted = undefined;
  }

  private async retentionMs(): Promise<number> {
    const { config } = await this.client.workflowService.describeNamespace({
      namespace: this.client.options.namespace,
    });
    const seconds = Number(config?.workflowExecutionRetentionTtl?.seconds ?? 0);
    return seconds > 0 ? seconds * 1000 : MIN_RETENTION_MS;
  }

  private add(build: ListedBuild): void {
    if (this.repoOf.has(build.name)) return;
    const repo = build.commit.repo;
    this.repoOf.set(build.name, repo);
    const names = this.buildsOf.get(repo) ?? new Set();
    names.add(build.name);
    this.buildsOf.set(repo, names);
  }

  private remove(name: string): void {
    const repo = this.repoOf.get(name);
    if (repo === undefined) return;
    this.repoOf.delete(name);
    const names = this.buildsOf.get(repo);
    names?.delete(name);
    if (names?.size === 0) this.buildsOf.delete(repo);
  }
}
