import type { Client } from '@temporalio/client';
import type { Response } from 'express';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import { listBuilds, type BuildFilter, type ListedBuild } from './build-client';
import { buildJson } from './views';

// Server-Sent Events of build changes, runboat's `/build-events`: the matching builds first,
// then `upd` and `del` events. One poll of Temporal visibility per API process feeds every
// subscriber, and only while there is one; the process keeps no other state.

const POLL_INTERVAL_MS = 400;
const KEEPALIVE_MS = 15_000;

export type EventFilter = Omit<BuildFilter, 'status'>;

interface Subscriber {
  filter: EventFilter;
  response: Response;
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

type Snapshot = Map<string, { build: ListedBuild; fingerprint: string }>;

export class BuildEvents {
  private readonly subscribers = new Set<Subscriber>();
  private known: Snapshot = new Map();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly config: Config,
    private readonly client: Client,
  ) {}

  async subscribe(filter: EventFilter, response: Response): Promise<void> {
    // The snapshot a subscriber starts from is the one later events are diffed against.
    if (!this.timer) {
      this.known = await this.snapshot();
      this.timer = setInterval(() => void this.poll(), POLL_INTERVAL_MS);
    }
    response.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const subscriber = { filter, response };
    for (const { build } of this.known.values()) {
      if (matches(filter, build)) this.send(subscriber, 'upd', build);
    }
    this.subscribers.add(subscriber);
    const keepalive = setInterval(() => response.write(': keepalive\n\n'), KEEPALIVE_MS);
    response.on('close', () => {
      clearInterval(keepalive);
      this.subscribers.delete(subscriber);
      if (this.subscribers.size === 0) this.stopPolling();
    });
  }

  close(): void {
    for (const { response } of this.subscribers) response.end();
    this.subscribers.clear();
    this.stopPolling();
  }

  private async snapshot(): Promise<Snapshot> {
    const builds = await listBuilds(this.client, this.config);
    return new Map(builds.map((build) => [build.name, { build, fingerprint: JSON.stringify(build) }]));
  }

  private stopPolling(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const current = await this.snapshot();
      for (const [name, entry] of current) {
        if (this.known.get(name)?.fingerprint !== entry.fingerprint) this.broadcast('upd', entry.build);
      }
      for (const [name, entry] of this.known) {
        if (!current.has(name)) this.broadcast('del', entry.build);
      }
      this.known = current;
    } catch (error) {
      logger.warn({ err: error }, 'build events: polling visibility failed');
    } finally {
      this.polling = false;
    }
  }

  private send(subscriber: Subscriber, event: 'upd' | 'del', build: ListedBuild): void {
    subscriber.response.write(`data: ${JSON.stringify({ event, build: buildJson(this.config, build) })}\n\n`);
  }

  private broadcast(event: 'upd' | 'del', build: ListedBuild): void {
    for (const subscriber of this.subscribers) {
      if (matches(subscriber.filter, build)) this.send(subscriber, event, build);
    }
  }
}
