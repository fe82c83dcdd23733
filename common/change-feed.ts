import type { Client } from '@temporalio/client';
import type { Config } from '../common/config';
import { listBuildChanges } from './build-list';
import type { ListedBuild } from './search-attributes';

// The incremental feed of build changes that the build index reads: each read lists what
// changed since the previous successful read, so it costs the changes, not the builds deployed
// (7,000 at OCA).

/**
 * How far before its last successful read a late read looks: a change is stamped with its
 * workflow task's start (on the Temporal server's clock) and becomes visible when the task
 * completes, up to a task timeout (10 s) later, plus visibility's lag and clock skew between
 * machines. Readers take changes seen twice as one.
 */
export const CHANGE_FEED_LOOKBACK_MS = 60_000;
/**
 * Most changes are visible within a second of their stamp, so reads look back only a twelfth
 * of the lookback (5 s): a read after a mass eviction would otherwise list again every build
 * ended in the last minute (500 rows, ~300 ms, for some request of the API). A late read, due
 * at most every sixth of the lookback (10 s) and made beside the reads, lists the changes
 * visibility recorded late.
 */
const RECENT_SHARE = 12;
const LATE_READ_SHARE = 6;

export interface BuildChanges {
  /** Running builds whose listed fields changed. */
  changed: ListedBuild[];
  /** Builds whose workflow ended and that do not run again under the same name. */
  gone: ListedBuild[];
}

export class ChangeFeed {
  /** When the last successful read (or the feed's start) began, on this process's clock. */
  private from: number;
  /** When the last successful late read began. */
  private lateReadAt = -Infinity;

  constructor(
    private readonly client: Client,
    private readonly config: Config,
    readonly lookbackMs = CHANGE_FEED_LOOKBACK_MS,
    from?: number,
    private readonly now: () => number = Date.now,
  ) {
    this.from = from ?? now();
  }

  /** When the last successful read began: what it returned is as of then. */
  get readAt(): number {
    return this.from;
  }

  /** Whether a late read is due: none succeeded within a sixth of the lookback (the first is). */
  get lateReadDue(): boolean {
    return this.now() - this.lateReadAt >= this.lookbackMs / LATE_READ_SHARE;
  }

  /**
   * The changes since the last successful read, however long ago: a read that fails moves
   * nothing, so the next one covers its window and nothing is lost to an outage. Changes that
   * visibility recorded late, and builds ended otherwise than by an undeploy, come with the next
   * late read.
   */
  async read(): Promise<BuildChanges> {
    const began = this.now();
    const changes = await this.changes(new Date(this.from - this.lookbackMs / RECENT_SHARE), false);
    this.from = began;
    return changes;
  }

  /**
   * The changes within the lookback before the last successful read, up to where a read made
   * now begins to look (that read lists the rest), whatever the reads listed of them already:
   * those visibility recorded after a read looked (a task that ran long, visibility's lag,
   * clock skew), and builds ended otherwise than by an undeploy (terminated, failed). Its reader
   * orders its answer with the reads made meanwhile.
   */
  async readLate(): Promise<BuildChanges> {
    const began = this.now();
    const changes = await this.changes(
      new Date(this.from - this.lookbackMs),
      true,
      new Date(this.from - this.lookbackMs / RECENT_SHARE),
    );
    this.lateReadAt = began;
    return changes;
  }

  private async changes(since: Date, everyEnding: boolean, until?: Date): Promise<BuildChanges> {
    const { changed, ended } = await listBuildChanges(this.client, this.config, since, everyEnding, until);
    // An ended run whose build runs again (redeployed under the same name) is no deletion.
    const running = new Set(changed.map((build) => build.name));
    return { changed, gone: ended.filter((build) => !running.has(build.name)) };
  }
}
