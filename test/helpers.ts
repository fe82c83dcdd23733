import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  type V1Deployment,
  type V1Job,
} from '@kubernetes/client-node';
import {
  Client,
  Connection,
  isGrpcDeadlineError,
  type WorkflowClient,
  type WorkflowHandle,
} from '@temporalio/client';
import type { QueryDefinition } from '@temporalio/common';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { apiConnectionOptions } from '../api/backend';
import { listRunningBuilds } from '../common/build-list';
import { BuildCluster } from '../common/kubernetes';
import { getBuildState } from '../api/build-client';
import { loadConfig, type Config } from '../common/config';
import type { BuildStatus } from '../common/types';
import { binary } from '../scripts/paths';
import { freePort, spawnService } from '../scripts/processes';
import { activitiesInFlight } from '../worker/heartbeats';
import { RELEASED_HISTORIES } from '../worker/self-check';
import { createWorker, SLOW_SHUTDOWN_MS } from '../worker/worker';
import { buildWorkflowId } from '../workflows/definitions';
import { temporalNamespaceOf } from './namespaces';
import type { TcpProxy } from './tcp-proxy';

export const SHA = (char: string) => char.repeat(40);

/** What the default kubefiles deploy in `deployment` mode: kind and name after `<build>-`. */
export const DEFAULT_DEPLOYMENT_OBJECTS = [
  'ConfigMap/odooenv',
  'ConfigMap/runboat-scripts',
  'Deployment/odoo',
  'Ingress/mailhog',
  'Ingress/odoo',
  'PersistentVolumeClaim/data',
  'Secret/odoosecretenv',
  'Service/odoo',
];

// Workers log every workflow step at INFO; tests show warnings and errors only.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // Installed already by another test file in this process.
}

/**
 * A configuration isolated to one test: its own Kubernetes namespace and task queue, and its
 * file's Temporal namespace on the shared dev server (a server of its own, `TEMPORAL_ADDRESS`,
 * has the default one).
 */
export function testConfig(env: Record<string, string> = {}): Config {
  const id = randomBytes(4).toString('hex');
  return loadConfig({
    TEMPORAL_NAMESPACE: env.TEMPORAL_ADDRESS === undefined ? testFileNamespace() : 'default',
    RUNBOAT_BUILD_NAMESPACE: `test-${id}`,
    RUNBOAT_BUILD_DOMAIN: 'runboat.test',
    RUNBOAT_TASK_QUEUE: `test-${id}`,
    RUNBOAT_REPOS: JSON.stringify([
      { repo: '^oca/.*', branch: '^1[0-9].0$', builds: [{ image: 'ghcr.io/oca/ci:16.0' }] },
    ]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    // Tests talk to loopback only: commit statuses go nowhere unless a test points them at
    // its recording server.
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
    RUNBOAT_GITHUB_API_URL: 'http://127.0.0.1:9',
    ...env,
  });
}

function testFileNamespace(): string {
  const file = expect.getState().testPath;
  if (!file) throw new Error("testConfig() runs in a test file: the Temporal namespace is the file's");
  return temporalNamespaceOf(file);
}

/** A Temporal client for a test file that runs no worker: connected before its tests, closed after. */
export function useTemporalClient(config: Config): { readonly client: Client } {
  let connection: Connection | undefined;
  const used = {} as { client: Client };
  beforeAll(async () => {
    connection = await Connection.connect({ address: config.temporalAddress });
    used.client = new Client({ connection, namespace: config.temporalNamespace });
  });
  afterAll(async () => {
    await connection?.close();
  });
  return used;
}

/** Terminates, after the file's tests, the workflows left on `config`'s task queue (none polls it). */
export function terminateWorkflowsAfterAll(temporal: { readonly client: Client }, config: Config): void {
  afterAll(async () => {
    const { client } = temporal;
    for await (const run of client.workflow.list({ query: `TaskQueue = '${config.taskQueue}'` })) {
      await client.workflow
        .getHandle(run.workflowId)
        .terminate('test over')
        .catch(() => undefined);
    }
  });
}

/** The test cluster's kubeconfig, its server reached through `proxy`. */
export function kubeConfigThrough(proxy: TcpProxy): KubeConfig {
  const direct = kubeConfig();
  const proxied = new KubeConfig();
  proxied.loadFromOptions({
    clusters: direct.clusters.map((c) => ({ ...c, server: `https://${proxy.address}` })),
    users: direct.users,
    contexts: direct.contexts,
    currentContext: direct.currentContext,
  });
  return proxied;
}

export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  return kc;
}

export class TestCluster {
  readonly kc = kubeConfig();
  readonly core = this.kc.makeApiClient(CoreV1Api);
  readonly apps = this.kc.makeApiClient(AppsV1Api);
  readonly batch = this.kc.makeApiClient(BatchV1Api);
  readonly builds: BuildCluster;
  private controller?: NodeJS.Timeout;
  private jobController?: NodeJS.Timeout;

  constructor(readonly namespace: string) {
    this.builds = new BuildCluster(this.kc, namespace);
  }

  async createNamespace(): Promise<void> {
    await this.core.createNamespace({ body: { metadata: { name: this.namespace } } });
  }

  async deployment(build: string) {
    const { items } = await this.apps.listNamespacedDeployment({
      namespace: this.namespace,
      labelSelector: `runboat/build=${build}`,
    });
    return items[0];
  }

  async jobs(build: string, kind: string) {
    const labelSelector = `runboat/build=${build},runboat/job-kind=${kind}`;
    return (await this.batch.listNamespacedJob({ namespace: this.namespace, labelSelector })).items;
  }

  /** The copy of `build`'s init log the worker keeps once its init failed (no pod runs here). */
  keepInitLog(build: string, log: string): Promise<void> {
    return this.builds.storeInitLog(build, log);
  }

  /**
   * Plays the Job controller: marks the build's `kind` job as succeeded or failed, started
   * `ranSeconds` (0) before, once it exists (up to 60 s: under the full suite's load, a fresh
   * worker's first Job once took more than 30 s, in test/upgrade.test.ts, which waits as long for
   * a build's status).
   */
  async finishJob(build: string, kind: string, succeeded: boolean, { ranSeconds = 0 } = {}): Promise<void> {
    const [job] = await waitFor(
      `${kind} job of ${build}`,
      async () => {
        const jobs = await this.jobs(build, kind);
        return jobs.length ? jobs : undefined;
      },
      60_000,
    );
    await this.completeJob(job, succeeded, ranSeconds);
  }

  private async completeJob(job: V1Job, succeeded: boolean, ranSeconds = 0): Promise<void> {
    const now = new Date();
    const startTime = new Date(now.getTime() - ranSeconds * 1000);
    const condition = (type: string, reason: string) => ({
      type,
      status: 'True',
      reason,
      message: reason,
      lastProbeTime: now,
      lastTransitionTime: now,
    });
    const status: V1Job['status'] = succeeded
      ? {
          startTime,
          completionTime: now,
          succeeded: 1,
          conditions: [
            condition('SuccessCriteriaMet', 'CompletionsReached'),
            condition('Complete', 'CompletionsReached'),
          ],
        }
      : {
          startTime,
          failed: 1,
          conditions: [
            condition('FailureTarget', 'BackoffLimitExceeded'),
            condition('Failed', 'BackoffLimitExceeded'),
          ],
        };
    await this.batch.replaceNamespacedJobStatus({
      name: job.metadata!.name!,
      namespace: this.namespace,
      body: { ...job, status },
    });
  }

  /** Plays the Job controller for every job: each that `admit` lets through succeeds. */
  playJobController(admit: (job: V1Job) => boolean = () => true): void {
    const sync = async () => {
      const { items } = await this.batch.listNamespacedJob({ namespace: this.namespace });
      for (const job of items) {
        if (job.status?.conditions?.length || job.metadata?.deletionTimestamp || !admit(job)) continue;
        await this.completeJob(job, true).catch(() => undefined);
      }
    };
    this.jobController = setInterval(() => void sync().catch(() => undefined), 100);
  }

  /** Plays the Deployment controller: ready replicas follow the desired count of those `admit` lets through. */
  playDeploymentController(admit: (deployment: V1Deployment) => boolean = () => true): void {
    const sync = async () => {
      const { items } = await this.apps.listNamespacedDeployment({ namespace: this.namespace });
      for (const d of items) {
        const replicas = d.spec?.replicas ?? 0;
        if ((d.status?.readyReplicas ?? 0) === replicas || !admit(d)) continue;
        await this.apps
          .replaceNamespacedDeploymentStatus({
            name: d.metadata!.name!,
            namespace: this.namespace,
            body: { ...d, status: { replicas, readyReplicas: replicas, availableReplicas: replicas } },
          })
          .catch(() => undefined);
      }
    };
    this.controller = setInterval(() => void sync().catch(() => undefined), 100);
  }

  stopControllers(): void {
    clearInterval(this.controller);
    clearInterval(this.jobController);
  }
}

export interface TestTemporal {
  client: Client;
  startWorker(): Promise<{ worker: Worker; stop(): Promise<void> }>;
  close(): Promise<void>;
}

export async function testTemporal(config: Config, cluster: TestCluster): Promise<TestTemporal> {
  // As the API connects: retries stop at a call's deadline, so none outlives the test's calls.
  const connection = await Connection.connect(apiConnectionOptions(config.temporalAddress));
  const nativeConnection = await NativeConnection.connect({ address: config.temporalAddress });
  const running: Array<() => Promise<void>> = [];
  return {
    client: new Client({ connection, namespace: config.temporalNamespace }),
    async startWorker() {
      const worker = await createWorker(config, nativeConnection, cluster.builds);
      const run = worker.run();
      const stop = async () => {
        if (worker.getState() === 'RUNNING') worker.shutdown();
        // Says what a worker that takes long to shut down still holds (a wake-and-caps teardown
        // once outlived its 180 s hook): its in-flight activations and activities.
        const slow = setTimeout(
          () => console.warn('worker still shutting down', worker.getStatus(), activitiesInFlight()),
          SLOW_SHUTDOWN_MS,
        );
        try {
          await run;
        } finally {
          clearTimeout(slow);
        }
      };
      running.push(stop);
      return { worker, stop };
    },
    async close() {
      await Promise.all(running.map((stop) => stop()));
      await nativeConnection.close();
      await connection.close();
    },
  };
}

/** Waits until the build's exact state (its query) has `status`, as `waitFor` does. */
export function untilBuildStatus(
  client: Client,
  name: string,
  status: BuildStatus,
  timeoutMs?: number,
): Promise<true> {
  return waitFor(
    `${name} ${status}`,
    async () => (await getBuildState(client, name)).status === status,
    timeoutMs,
  );
}

/**
 * Terminates a build's workflow, as from the Temporal UI, leaving its objects; resolves once
 * visibility no longer lists the build running (the orphan sweep trusts that list).
 */
export async function terminateBuildWorkflow(client: Client, config: Config, name: string): Promise<void> {
  await client.workflow.getHandle(buildWorkflowId(name)).terminate('lost by hand');
  await waitFor(
    'visibility to list the build as ended',
    async () => !(await listRunningBuilds(client, config.taskQueue)).some((build) => build.name === name),
  );
}

/** Polls until `probe` returns a value other than undefined/false, for up to `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * `handle.query(query)`, asked again when no answer comes within `timeoutMs`, with a line in the
 * test's output. The time-skipping test server sometimes never answers a query (see
 * `untilStatus` in test/time-skipping.test.ts); unbounded, the call waited 90 s, until the server
 * closed the connection over the client's keepalive pings, and the test timed out saying nothing
 * of it. A query has no effect, so asking again is safe.
 */
export async function answeredQuery<R>(
  handle: WorkflowHandle,
  query: QueryDefinition<R, []>,
  { timeoutMs = 10_000, attempts = 3 } = {},
): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await handle.client.withDeadline(Date.now() + timeoutMs, () => handle.query(query));
    } catch (error) {
      if (attempt >= attempts || !isGrpcDeadlineError(error)) throw error;
      console.warn(`query ${query.name} unanswered in ${timeoutMs} ms, asking again`);
    }
  }
}

/**
 * Checks that `probe` holds on every poll for `forMs`: the way to say "nothing happens" without
 * a bare sleep. Fails at the first poll where it does not.
 */
export async function consistently(
  what: string,
  probe: () => Promise<boolean> | boolean,
  forMs = 2_000,
): Promise<void> {
  const until = Date.now() + forMs;
  while (Date.now() < until) {
    if (!(await probe())) throw new Error(`expected ${what} to hold for ${forMs} ms, but it did not`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Waits until `count` distinct workers poll `config`'s task queue for workflow tasks: a worker
 * process takes seconds to start (more on a loaded machine), which no test's clock should pay.
 */
export async function untilWorkersPoll(client: Client, config: Config, count: number): Promise<void> {
  await waitFor(
    `${count} worker(s) polling ${config.taskQueue}`,
    async () => {
      const { pollers } = await client.workflowService.describeTaskQueue({
        namespace: config.temporalNamespace,
        taskQueue: { name: config.taskQueue },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      });
      return new Set((pollers ?? []).map((poller) => poller.identity)).size >= count;
    },
    120_000,
  );
}

/**
 * A worker as its own process (`worker/main.ts`), configured like `config`, to kill or scale
 * out. Its JSON log lines go nowhere unless `output` is given, which receives each of them.
 */
export function spawnWorkerProcess(
  config: Config,
  env: Record<string, string> = {},
  output?: (line: string) => void,
): ChildProcess {
  return spawnServiceProcess(path.join('worker', 'main.ts'), config, env, output);
}

/**
 * `api/main.ts` as its own process on a free port, configured like `config`, once it answers
 * /readyz (it reaches Temporal). Kill `child` when done.
 */
export async function spawnApiProcess(
  config: Config,
  env: Record<string, string> = {},
  output?: (line: string) => void,
): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawnServiceProcess(
    path.join('api', 'main.ts'),
    config,
    { PORT: String(port), ...env },
    output,
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`the API process on ${url} ready`, async () => (await fetch(`${url}/readyz`)).ok, 60_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return { child, url };
}

/** The environment that configures a worker or API process like `config`, on the test cluster. */
export function serviceEnv(config: Config): Record<string, string> {
  return {
    KUBECONFIG: inject('kubeconfig'),
    TEMPORAL_ADDRESS: config.temporalAddress,
    TEMPORAL_NAMESPACE: config.temporalNamespace,
    RUNBOAT_TASK_QUEUE: config.taskQueue,
    RUNBOAT_BUILD_NAMESPACE: config.buildNamespace,
    RUNBOAT_BUILD_DOMAIN: config.buildDomain,
    RUNBOAT_KUSTOMIZE_RENDERER: config.kustomizeRenderer,
    RUNBOAT_MAX_INITIALIZING: String(config.maxInitializing),
    RUNBOAT_DISABLE_COMMIT_STATUSES: String(config.disableCommitStatuses),
    RUNBOAT_GITHUB_API_URL: config.githubApiUrl,
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
  };
}

/** `worker/main.ts` or `api/main.ts` as its own process, configured like `config`. */
export function spawnServiceProcess(
  main: string,
  config: Config,
  env: Record<string, string> = {},
  output?: (line: string) => void,
): ChildProcess {
  return spawnService(
    main,
    { ...process.env, ...serviceEnv(config), LOG_LEVEL: 'warn', ...env },
    { onLine: output },
  );
}

const quietBundler = { trace() {}, debug() {}, info() {}, warn() {}, error: console.error, log() {} };

/** The workflow bundle of `workflowsPath` (a folder or a module), without the bundler's progress logs. */
export async function bundleQuietly(workflowsPath: string): Promise<{ code: string }> {
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietBundler });
  return { code };
}

/** Replays `history` on today's workflow code: it fails on any non-determinism. */
export async function replayOnTodaysCode(
  history: temporal.api.history.v1.IHistory,
  replayName?: string,
): Promise<void> {
  await Worker.runReplayHistory(
    { workflowsPath: path.resolve(__dirname, '..', 'workflows'), replayName },
    history,
  );
}

/** Every run of workflow `workflowId` from `firstRunId` on, first to last, following its continue-as-new chain. */
export async function runHistories(
  client: WorkflowClient,
  workflowId: string,
  firstRunId: string,
): Promise<temporal.api.history.v1.IHistoryEvent[][]> {
  const runs: temporal.api.history.v1.IHistoryEvent[][] = [];
  for (let runId: string | null | undefined = firstRunId; runId;) {
    const events: temporal.api.history.v1.IHistoryEvent[] =
      (await client.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    runs.push(events);
    runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
  }
  return runs;
}

/**
 * Replays `history` on today's workflow code. With RUNBOAT_RECORD_HISTORIES=<version>, run from
 * a release's commit, also keeps it as that release's fixture `file`, which test/replay.test.ts
 * replays against every later change of the workflows; a fixture is never overwritten (a
 * release's histories are never re-recorded).
 */
export async function replayAndRecord(
  file: string,
  history: temporal.api.history.v1.IHistory,
): Promise<void> {
  await replayOnTodaysCode(history, file);
  const version = process.env.RUNBOAT_RECORD_HISTORIES;
  if (!version) return;
  const dir = path.join(RELEASED_HISTORIES, version);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, file), historyToJSON(history), { flag: 'wx' });
}

/**
 * `replayAndRecord` for each run of a workflow: `<name>.json` for a single run, else
 * `<name>-run<N>.json`, numbered from 1, first to last.
 */
export async function replayAndRecordRuns(
  name: string,
  runs: temporal.api.history.v1.IHistoryEvent[][],
): Promise<void> {
  for (const [index, events] of runs.entries())
    await replayAndRecord(runs.length === 1 ? `${name}.json` : `${name}-run${index + 1}.json`, { events });
}
