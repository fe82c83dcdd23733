import { BatchV1Api, KubeConfig, KubernetesObjectApi, Watch, type V1Job } from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUILD_OBJECT_KINDS } from '../common/kubernetes';
import type { BuildJson } from '../api/views';
import type { CommitInfo } from '../common/types';
import { webhookVerifier } from '../api/webhooks';
import { buildRef } from '../common/build';
import { buildWorkflowId } from '../workflows/definitions';

// What `npm run chaos` and its fast version in `npm test` (test/chaos.test.ts) share: builds
// driven through full lives by the REST API, as a user and GitHub would, and the invariants
// checked while processes die around them.

const BUILD_LABEL = 'runboat/build';
const INIT_JOBS = 'runboat/job-kind=initialize';
const buildOf = (o: { metadata?: { labels?: Record<string, string> } }) =>
  o.metadata?.labels?.[BUILD_LABEL] ?? '';
const finished = (job: V1Job) =>
  job.status?.conditions?.some(
    (c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True',
  ) ?? false;

/**
 * Watches the init Jobs of a namespace from the API server (listing again whenever the watch
 * ends: a kube-apiserver restart, a 410), keeping every Job uid each build ever had and the
 * peak of unfinished init Jobs, sampled. A Job being deleted counts until it is gone.
 */
export class InitJobObserver {
  /** Every init Job uid seen, per build. */
  readonly uids = new Map<string, Set<string>>();
  peak = 0;
  samples = 0;
  /** How many times the watch had to list again (it ended, or the API server was down). */
  relists = 0;
  private readonly jobs = new Map<string, V1Job>();
  private readonly batch: BatchV1Api;
  private readonly watch: Watch;
  private stopped = false;
  private abort?: AbortController;
  private sampler?: NodeJS.Timeout;
  private loop?: Promise<void>;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly sampleMs = 250,
  ) {
    this.batch = kc.makeApiClient(BatchV1Api);
    this.watch = new Watch(kc);
  }

  /** Resolves once the first list is in. */
  async start(): Promise<void> {
    let listed!: () => void;
    const first = new Promise<void>((resolve) => (listed = resolve));
    this.loop = this.run(listed);
    this.sampler = setInterval(() => this.sample(), this.sampleMs);
    await first;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sampler);
    this.abort?.abort();
    await this.loop;
  }

  /** Unfinished init Jobs right now, as last seen. */
  active(): number {
    return [...this.jobs.values()].filter((job) => !finished(job)).length;
  }

  /** Builds that ever had more than one init Job: each is initialized once in a chaos run. */
  doubleInits(): Array<{ build: string; jobs: number }> {
    return [...this.uids]
      .filter(([, uids]) => uids.size > 1)
      .map(([build, uids]) => ({ build, jobs: uids.size }));
  }

  private sample(): void {
    this.samples++;
    this.peak = Math.max(this.peak, this.active());
  }

  private record(job: V1Job): void {
    const uid = job.metadata?.uid;
    if (!uid) return;
    this.jobs.set(uid, job);
    const build = buildOf(job);
    const uids = this.uids.get(build) ?? new Set<string>();
    uids.add(uid);
    this.uids.set(build, uids);
  }

  private async run(listed: () => void): Promise<void> {
    while (!this.stopped) {
      try {
        const list = await this.batch.listNamespacedJob({
          namespace: this.namespace,
          labelSelector: INIT_JOBS,
        });
        this.jobs.clear();
        for (const job of list.items) this.record(job);
        listed();
        await new Promise<void>((resolve) => {
          this.watch
            .watch(
              `/apis/batch/v1/namespaces/${this.namespace}/jobs`,
              { labelSelector: INIT_JOBS, resourceVersion: list.metadata?.resourceVersion },
              (type, job: V1Job) => {
                if (type === 'DELETED') this.jobs.delete(job.metadata?.uid ?? '');
                else if (type === 'ADDED' || type === 'MODIFIED') this.record(job);
              },
              () => resolve(),
            )
            .then(
              (abort) => (this.abort = abort),
              () => resolve(),
            );
        });
      } catch {
        // The API server is down or restarting: list again shortly.
      }
      if (this.stopped) break;
      this.relists++;
      await sleep(500);
    }
  }
}

/**
 * Objects labelled with a build whose workflow is not running, as `Kind/name` per build: what
 * an undeploy, or a crash during one, left behind.
 */
export async function orphanObjects(
  kc: KubeConfig,
  namespace: string,
  client: Client,
): Promise<Map<string, string[]>> {
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const byBuild = new Map<string, string[]>();
  for (const { apiVersion, kind } of BUILD_OBJECT_KINDS) {
    const { items } = await objects.list(
      apiVersion,
      kind,
      namespace,
      undefined,
      undefined,
      undefined,
      undefined,
      BUILD_LABEL,
    );
    for (const item of items) {
      const build = buildOf(item);
      byBuild.set(build, [...(byBuild.get(build) ?? []), `${kind}/${item.metadata?.name}`]);
    }
  }
  const orphans = new Map<string, string[]>();
  for (const [build, names] of byBuild) {
    if (!(await workflowRunning(client, build))) orphans.set(build, names);
  }
  return orphans;
}

export async function workflowRunning(client: Client, build: string): Promise<boolean> {
  try {
    const { status } = await client.workflow.getHandle(buildWorkflowId(build)).describe();
    return status.name === 'RUNNING';
  } catch (error) {
    if ((error as Error).name === 'WorkflowNotFoundError') return false;
    throw error;
  }
}

/** The stage a life reached, in order; `done` once undeployed. */
export const LIFE_STAGES = ['webhook', 'started', 'stopped', 'restarted', 'undeploying', 'done'] as const;
export type LifeStage = (typeof LIFE_STAGES)[number];

export interface Life {
  index: number;
  name?: string;
  stage: LifeStage;
  /** The status the API last listed for the build. */
  status?: string;
}

/**
 * The service's REST API as GitHub and a user use it: signed webhooks, then commands, each
 * retried while the API answers 5xx, 429 or not at all (a Temporal restart), and counted by
 * the answer. Build statuses come from one list request per poll for every life, not one
 * request per build: what the lives wait on costs the service little.
 */
export class ServiceDriver {
  /** Answers to webhooks and commands, by HTTP status, or why there was none. */
  readonly answers = new Map<string, number>();
  private statuses = new Map<string, string>();
  private listed = 0;
  private poller?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    readonly url: string,
    private readonly options: {
      webhookSecret: string;
      admin: { user: string; password: string };
      pollMs?: number;
      /**
       * GitHub delivering a signed webhook, once, as it does (`WebhookSide.deliver`): a delivery
       * the API fails to take is the service's to ask again. Without it the driver sends the
       * webhook itself until the API answers 2xx.
       */
      deliverWebhook?: (event: string, body: string) => Promise<unknown>;
    },
  ) {}

  start(): void {
    const poll = async () => {
      try {
        const response = await fetch(`${this.url}/api/v1/builds`, { signal: AbortSignal.timeout(10_000) });
        if (!response.ok) return;
        const builds = (await response.json()) as BuildJson[];
        this.statuses = new Map(builds.map((b) => [b.name, b.status]));
        this.listed++;
      } catch {
        // The API or Temporal is restarting: the next poll will tell.
      }
    };
    const loop = async () => {
      await poll();
      if (!this.stopped) this.poller = setTimeout(() => void loop(), this.options.pollMs ?? 1_000);
    };
    void loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.poller);
  }

  status(name: string): string | undefined {
    return this.statuses.get(name);
  }

  /** Runs one build's whole life: webhook, started, stop, start, undeploy, gone. */
  async life(life: Life, commit: CommitInfo, abort: AbortSignal): Promise<void> {
    const name = await this.pullRequestWebhook(commit, abort);
    life.name = name;
    const until = async (status: string | undefined) => {
      // A status must be seen in a list made after the command was answered.
      const after = this.listed + 1;
      for (;;) {
        abort.throwIfAborted();
        life.status = this.statuses.get(name);
        if (this.listed > after && life.status === status) return;
        await sleep(200);
      }
    };
    await until('started');
    life.stage = 'started';
    await this.send('POST', `/api/v1/builds/${name}/stop`, abort);
    await until('stopped');
    life.stage = 'stopped';
    await this.send('POST', `/api/v1/builds/${name}/start`, abort);
    await until('started');
    life.stage = 'restarted';
    await this.send('DELETE', `/api/v1/builds/${name}`, abort);
    life.stage = 'undeploying';
    await until(undefined);
    life.stage = 'done';
  }

  private async pullRequestWebhook(commit: CommitInfo, abort: AbortSignal): Promise<string> {
    const body = JSON.stringify({
      action: 'opened',
      number: commit.pr,
      pull_request: { head: { sha: commit.git_commit }, base: { ref: commit.target_branch } },
      repository: { full_name: commit.repo },
    });
    if (this.options.deliverWebhook) {
      await this.options.deliverWebhook('pull_request', body);
      return buildRef(commit).name;
    }
    const verifier = await webhookVerifier(this.options.webhookSecret);
    const response = await this.send('POST', '/webhooks/github', abort, {
      body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'pull_request',
        'x-hub-signature-256': await verifier.sign(body),
      },
    });
    const { builds } = (await response.json()) as { builds: string[] };
    return builds[0];
  }

  /**
   * Sends until answered 2xx; fails on any other 4xx, which no retry changes, but for a DELETE
   * answered 404 once an earlier attempt may have reached the API (no answer, or a 5xx): that
   * attempt undeployed the build, and the API went down before it could say so.
   */
  async send(
    method: string,
    path: string,
    abort: AbortSignal,
    init: { body?: string; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const { user, password } = this.options.admin;
    const headers = {
      ...init.headers,
      authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
    };
    let mayHaveActed = false;
    for (let attempt = 1; ; attempt++) {
      abort.throwIfAborted();
      let noAnswer = '';
      const response = await fetch(`${this.url}${path}`, {
        method,
        headers,
        body: init.body,
        signal: AbortSignal.any([abort, AbortSignal.timeout(30_000)]),
      }).catch((error: unknown) => {
        noAnswer = `none (${whyNoAnswer(error)})`;
        return undefined;
      });
      const code = response?.status ?? 0;
      const answer = response ? String(code) : noAnswer;
      this.answers.set(answer, (this.answers.get(answer) ?? 0) + 1);
      if (response?.ok) return response;
      if (response && method === 'DELETE' && code === 404 && mayHaveActed) return response;
      if (response && code < 500 && code !== 429) {
        throw new Error(`${method} ${path}: ${code} ${await response.text()}`);
      }
      if (code !== 429) mayHaveActed = true;
      await response?.arrayBuffer();
      await sleep(Math.min(500 * attempt, 5_000));
    }
  }
}

/** A failed fetch's reason: the socket's error code (ECONNRESET…) or the abort's name. */
function whyNoAnswer(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: string } | undefined) : undefined;
  return cause?.code ?? (error instanceof Error ? error.name : String(error));
}

/** The commit of the `i`-th build of a run: one pull request each. */
export const chaosCommit = (i: number): CommitInfo => ({
  repo: 'oca/chaos',
  target_branch: '16.0',
  pr: i + 1,
  git_commit: (i + 1).toString(16).padStart(40, '0'),
});
