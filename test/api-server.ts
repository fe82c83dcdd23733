import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Webhooks } from '@octokit/webhooks';
import type { Client } from '@temporalio/client';
import { GitHub } from '../common/github';
import type { Config } from '../common/config';
import { createApp } from '../api/app';
import { BUILD_EVENTS_POLL_INTERVAL_MS, type BuildEvents } from '../api/events';
import { afterAll, beforeAll } from 'vitest';
import type { BuildJson } from '../api/views';
import { TestCluster, testTemporal, waitFor, type TestTemporal } from './helpers';

// The API app on a loopback port, and the calls tests make to it as GitHub and people would.

export interface TestApi {
  url: string;
  routes: Array<{ method: string; path: string }>;
  events: BuildEvents;
  /**
   * Sends a GitHub webhook, signed with `secret` unless `signature` is given, as the delivery
   * `delivery` (GitHub's guid of the event; a new one unless given).
   */
  webhook(
    event: string,
    body: string | object,
    options?: { secret?: string; signature?: string | null; delivery?: string },
  ): Promise<Response>;
  request(method: string, path: string, options?: { admin?: boolean; body?: string }): Promise<Response>;
  /** Opens `/api/v1/build-events?<query>` as a browser's EventSource would. */
  follow(query: string): Promise<EventStream>;
  close(): Promise<void>;
}

export interface BuildEvent {
  event: 'upd' | 'del';
  build: BuildJson;
}

/** An open build-events stream: what it received so far, and a way to wait for more. */
export interface EventStream {
  response: Response;
  received: BuildEvent[];
  /** Resolves with the first event (received so far or later) that `predicate` accepts. */
  next(what: string, predicate: (event: BuildEvent) => boolean): Promise<BuildEvent>;
  close(): void;
}

/** The API's /metrics, as Prometheus scrapes it. */
export async function scrapeMetrics(api: Pick<TestApi, 'request'>): Promise<string> {
  return (await api.request('GET', '/metrics')).text();
}

/** The value of one series (`name{labels}`, as /metrics writes it) in a scrape; undefined if absent. */
export function metricSample(scraped: string, series: string): number | undefined {
  const line = scraped.split('\n').find((each) => each.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The API's count of build-events polls with this outcome, read from its /metrics. */
export async function buildEventPolls(api: TestApi, outcome: 'ok' | 'failed'): Promise<number> {
  const series = `runboat_build_events_polls_total{outcome="${outcome}"}`;
  return metricSample(await scrapeMetrics(api), series) ?? 0;
}

/** How many reads of visibility the API's build index made so far (both kinds, both outcomes). */
export async function buildIndexReads(api: TestApi): Promise<number> {
  const text = await scrapeMetrics(api);
  return [...text.matchAll(/^runboat_build_index_reads_total\{[^}]*\} (\d+)$/gm)].reduce(
    (sum, [, count]) => sum + Number(count),
    0,
  );
}

/** How many builds the API's build-events polls listed so far, read from its /metrics. */
export async function buildEventsListed(api: TestApi): Promise<number> {
  return metricSample(await scrapeMetrics(api), 'runboat_build_events_listed_builds_total') ?? NaN;
}

/** Waits until the API has polled successfully for three times `deadlineMs`, its backend deadline. */
export async function pollPastTheDeadline(api: TestApi, deadlineMs: number): Promise<void> {
  const from = await buildEventPolls(api, 'ok');
  const needed = Math.ceil((3 * deadlineMs) / BUILD_EVENTS_POLL_INTERVAL_MS);
  await waitFor(
    `${needed} successful build-events polls`,
    async () => (await buildEventPolls(api, 'ok')) >= from + needed,
    needed * BUILD_EVENTS_POLL_INTERVAL_MS + 30_000,
  );
}

async function openEventStream(url: string): Promise<EventStream> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const received: BuildEvent[] = [];
  let buffer = '';
  let reading: Promise<void> | undefined;
  const readMore = async () => {
    const { value, done } = await reader.read();
    if (done) throw new Error('the event stream ended');
    buffer += value;
    const frames = buffer.split('\n\n');
    buffer = frames.pop() ?? '';
    for (const frame of frames) {
      const data = frame.split('\n').find((line) => line.startsWith('data: '));
      if (data) received.push(JSON.parse(data.slice(6)) as BuildEvent);
    }
  };
  return {
    response,
    received,
    next: (what, predicate) =>
      waitFor(what, async () => {
        if (!received.some(predicate)) {
          // One read at a time, in slices of a second so that waitFor can give up on time: a
          // probe that returns leaves its read pending for the next one.
          reading ??= readMore().finally(() => (reading = undefined));
          await Promise.race([reading, new Promise((resolve) => setTimeout(resolve, 1_000))]);
        }
        return received.find(predicate);
      }),
    close: () => controller.abort(),
  };
}

export interface TestApiOptions {
  /** The deadline of each backend call (the API's default otherwise). */
  backendTimeoutMs?: number;
  /** How far back each build-events poll looks (the API's default otherwise). */
  eventsLookbackMs?: number;
}

export async function startTestApi(
  config: Config,
  client: Client,
  cluster: TestCluster,
  options: TestApiOptions = {},
): Promise<TestApi> {
  // `cluster.builds` reads logs; GitHub calls go to `config.githubApiUrl` (a recorder in tests).
  const { app, events, index, routes } = createApp({
    config,
    client,
    cluster: cluster.builds,
    github: new GitHub(config),
    backendTimeoutMs: options.backendTimeoutMs,
    eventsLookbackMs: options.eventsLookbackMs,
  });
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const adminHeader = `Basic ${Buffer.from(`${config.adminUser}:${config.adminPassword}`).toString('base64')}`;
  return {
    url,
    routes,
    events,
    async webhook(event, body, options = {}) {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'x-github-event': event,
        'x-github-delivery': options.delivery ?? crypto.randomUUID(),
      };
      const secret = options.secret ?? config.githubWebhookSecret;
      // Signed like GitHub does when a secret is set; unsigned otherwise (or when told so).
      if (options.signature) headers['x-hub-signature-256'] = options.signature;
      else if (options.signature !== null && secret) {
        headers['x-hub-signature-256'] = await new Webhooks({ secret }).sign(text);
      }
      return fetch(`${url}/webhooks/github`, { method: 'POST', headers, body: text });
    },
    request(method, path, options = {}) {
      const headers: Record<string, string> = options.admin ? { authorization: adminHeader } : {};
      return fetch(`${url}${path}`, { method, headers, body: options.body });
    },
    follow: (query) => openEventStream(`${url}/api/v1/build-events?${query}`),
    async close() {
      events.close();
      // A poll or an index read still running would call Temporal after the test closed its
      // connection (their retries outlive any request that waited for them).
      await waitFor(
        'the build-events poller and the build index to finish',
        async () => !events.active && !index.active,
      );
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Payload shapes from GitHub's webhook documentation, reduced to the fields GitHub always sends. */
export const payloads = {
  push(repo: string, branch: string, sha: string, deleted = false) {
    return {
      ref: `refs/heads/${branch}`,
      before: '0'.repeat(40),
      after: deleted ? '0'.repeat(40) : sha,
      created: false,
      deleted,
      forced: false,
      repository: { id: 1, name: repo.split('/')[1], full_name: repo, private: false },
      pusher: { name: 'octocat', email: 'octocat@example.com' },
      sender: { login: 'octocat', id: 1 },
      commits: [],
    };
  },
  pullRequest(
    action: string,
    repo: string,
    number: number,
    base: string,
    sha: string,
    { draft = false } = {},
  ) {
    return {
      action,
      number,
      pull_request: {
        id: number,
        number,
        state: action === 'closed' ? 'closed' : 'open',
        draft,
        title: 'Add a feature',
        head: { ref: 'feature', sha, repo: { full_name: `someone/${repo.split('/')[1]}` } },
        base: { ref: base, sha: 'f'.repeat(40), repo: { full_name: repo } },
      },
      repository: { id: 1, name: repo.split('/')[1], full_name: repo, private: false },
      sender: { login: 'octocat', id: 1 },
    };
  },
};

/** What a test file runs its builds on: a namespace, a worker and the API, all its own. */
export interface TestStack {
  temporal: TestTemporal;
  api: TestApi;
  close(): Promise<void>;
}

/**
 * Creates the file's namespace, plays the Deployment controller (unless told not to), and
 * starts an in-process worker and the API on a loopback port.
 */
export interface StackOptions extends TestApiOptions {
  deploymentController?: boolean;
  /** Start today's worker with the stack (default); tests of other workers start it later. */
  worker?: boolean;
}

export async function startStack(
  config: Config,
  cluster: TestCluster,
  options: StackOptions = {},
): Promise<TestStack> {
  await cluster.createNamespace();
  if (options.deploymentController ?? true) cluster.playDeploymentController();
  const temporal = await testTemporal(config, cluster);
  if (options.worker ?? true) await temporal.startWorker();
  const api = await startTestApi(config, temporal.client, cluster, options);
  return {
    temporal,
    api,
    async close() {
      cluster.stopControllers();
      await api.close();
      await temporal.close();
    },
  };
}

/**
 * `startStack` for the whole file: started before its first test and closed after its last.
 * The cluster is there at once; `temporal` and `api` once the stack has started.
 */
export function useStack(config: Config, options: StackOptions = {}): TestStack & { cluster: TestCluster } {
  const cluster = new TestCluster(config.buildNamespace);
  let started: TestStack | undefined;
  beforeAll(async () => {
    started = await startStack(config, cluster, options);
  });
  afterAll(async () => {
    await started?.close();
  });
  const stack = () => {
    if (!started) throw new Error('the test stack starts in beforeAll');
    return started;
  };
  return {
    cluster,
    get temporal() {
      return stack().temporal;
    },
    get api() {
      return stack().api;
    },
    close: () => stack().close(),
  };
}
