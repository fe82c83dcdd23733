import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  Watch,
  type V1Deployment,
  type V1Job,
} from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { temporal as temporalProto } from '@temporalio/proto';
import { chromium, type Page } from 'playwright-core';
import { webhookVerifier } from '../api/webhooks';
import { startBuild } from '../api/build-client';
import { lifecycleSettings } from '../common/build-start';
import { CHANGE_FEED_LOOKBACK_MS } from '../common/change-feed';
import { listRunningBuilds } from '../common/build-list';
import type { CommitInfo } from '../common/types';
import { loadConfig } from '../common/config';
import { runningBuildsQuery } from '../common/search-attributes';
import type { evictionWorkflow } from '../workflows';
import { buildStateQuery, buildWorkflowId } from '../workflows/definitions';
import { startControlPlane } from './control-plane';
import { forEachAtOnce } from './at-once';
import { binary } from './paths';
import { startServiceProcesses } from './service';
import { CONTROLLER_MANAGER_QPS, startSimulatedCluster } from './simulated-cluster';
import { freePort, waitUntil } from './processes';
import { percentile } from './percentile';
import { calibrationCpuMs, childPids, CpuMeter, growth, ownCpuSeconds } from './proc-cpu';
import { startGitHubEmulator } from './github-emulator';
import { startTemporalDevServer } from './temporal-dev';
import { startTemporalPostgres } from './temporal-postgres';
import { fillVisibility } from './visibility-fill';

// `npm run bench`: builds against the real service (a worker process and an API process, as in
// production) on a Temporal dev server and, by default, the simulated cluster of `npm start`
// (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes), with the default kubefiles.
//
//   BENCH_SCENARIO=burst (default): BENCH_BUILDS (100) builds through signed pull_request
//     webhooks sent BENCH_BURST_CONCURRENCY (20) at a time, as issue 10 measured runboat
//     (BENCH_VIA=client: the Temporal client instead); latencies, CPU per
//     build of the service's processes (from /proc, children included), workflow tasks and
//     activities per build (from histories), where each build's first moments go (from its
//     history), where the starts waited inside the Temporal dev server (its own timers),
//     eviction to 50 deployed.
//   BENCH_SCENARIO=scale: as many builds as the machine holds, up to BENCH_BUILDS (7000),
//     across 50 repos, max_initializing 20, max_started 150, within BENCH_SCALE_MINUTES (25)
//     of populating; then RSS and disk of every process, idle CPU over 60 s, one eviction
//     run, API latencies.
//     BENCH_SCALE_FILL=N then adds open build workflows until N builds are open, each with the
//     search attributes of a build waiting for an init slot and a start delay of 30 days (no
//     worker runs them; signals do not wake them, an update would): what visibility holds at N
//     deployed builds, for the API, eviction's counts and idle CPU at that N. Eviction never
//     picks an initializing build, so the real builds stay the ones acted on.
//   BENCH_SCENARIO=api: the API's latencies as visibility fills up, no build run: open build
//     workflows with an initializing build's search attributes (as BENCH_SCALE_FILL adds them), 150
//     in one repo (a board) and the rest across 49 others, timed at 150 and at BENCH_BUILDS
//     (2000) open builds, a minute after each fill (the steady state); the bare control plane,
//     as no build reaches it.
//   BENCH_SCENARIO=idle: BENCH_BUILDS (11) builds one at a time, each once the one before is
//     ready: webhook → Deployment and init → scaled of the first (cold) and of the others (warm),
//     and where a warm build's first moments go, from its history.
//   BENCH_TEMPORAL=postgres: the Temporal server on PostgreSQL (scripts/temporal-postgres.ts,
//     what compose deploys) instead of the dev server; its CPU includes PostgreSQL's processes.
//   BENCH_CLUSTER=bare: the bare control plane, the bench playing the Job and Deployment
//     controllers (the benchmark as it was before the simulated cluster).
//   BENCH_GITHUB=limited (burst): commit statuses on, posted to a GitHub on loopback with
//     GitHub's secondary rate limit (scripts/github-emulator.ts; BENCH_GITHUB_DEPLOYMENTS=true
//     adds deployments); after the burst, waits until every build's success status is posted (or
//     BENCH_GITHUB_MINUTES, 10, pass, or GitHub gets nothing for 2 minutes) and prints what
//     GitHub accepted, refused, and never got.
//   BENCH_HISTORY=1 prints the first build's history.
//   BENCH_WAIT_MINUTES (10): how long any one wait for the service (Deployments, readiness, an
//     eviction) may last before the run fails, keeping its logs: a broken worker ends the run.
//   BENCH_CLUSTER_NICE=N runs the cluster's processes at nice N (0: as issue 10 measures, the
//     cluster sharing the cores evenly with the service): a stand-in for a cluster on machines
//     of its own, as in production, to tell the service's latencies from the shared cores'.

const SCENARIO = process.env.BENCH_SCENARIO ?? 'burst';
const SCALE = SCENARIO === 'scale';
const API = SCENARIO === 'api';
const IDLE = SCENARIO === 'idle';
const BUILDS = Number(process.env.BENCH_BUILDS ?? (SCALE ? 7000 : API ? 2000 : IDLE ? 11 : 100));
const BARE = process.env.BENCH_CLUSTER === 'bare' || API;
const VIA_WEBHOOKS = process.env.BENCH_VIA !== 'client';
const WEBHOOK_SECRET = 'bench-secret';
/** The burst's requests in flight at once: a new one as soon as one is answered. */
const BURST_CONCURRENCY = Number(process.env.BENCH_BURST_CONCURRENCY ?? 20);
const MAX_DEPLOYED_AFTER = 50;
const REPOS = SCALE || API ? 50 : 1;
/** The builds of the repo whose board the API scenario times (issue 10's "a 150-build repo"). */
const BOARD_BUILDS = 150;
/** Requests per endpoint for each latency row. */
const API_REQUESTS = Number(process.env.BENCH_API_REQUESTS ?? 30);
const SCALE_MINUTES = Number(process.env.BENCH_SCALE_MINUTES ?? 25);
const ON_POSTGRES = process.env.BENCH_TEMPORAL === 'postgres';
const SCALE_FILL = Number(process.env.BENCH_SCALE_FILL ?? 0);
/** OCA's max_started, for the scale scenario. */
const SCALE_MAX_STARTED = 150;
/** Undeploys asked of a later over-limit eviction run, after the measured one. */
const LATER_UNDEPLOYS = 20;
const CLUSTER_NICE = Number(process.env.BENCH_CLUSTER_NICE ?? 0);
const WAIT_MS = Number(process.env.BENCH_WAIT_MINUTES ?? 10) * 60_000;
const GITHUB_LIMITED = process.env.BENCH_GITHUB === 'limited';
const GITHUB_WAIT_MS = Number(process.env.BENCH_GITHUB_MINUTES ?? 10) * 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Linux's nice is per thread: every thread of `pid` (the threads it makes later inherit it). */
function renice(pid: number, nice: number): void {
  for (const thread of readdirSync(`/proc/${pid}/task`)) os.setPriority(Number(thread), nice);
}

/** When a history event happened, in ms since the epoch (NaN for no event). */
const eventMs = (event?: temporalProto.api.history.v1.IHistoryEvent | null) =>
  Number(event?.eventTime?.seconds) * 1000 + Number(event?.eventTime?.nanos) / 1e6;
/** Latencies mean little without the load they were measured under. */
const loadAverage = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

/** RSS of `pid` and its descendants (PostgreSQL's backends; shared buffers counted in each). */
function treeRssMiB(pid: number): number {
  return memoryMiB(pid).rss + childPids(pid).reduce((total, child) => total + treeRssMiB(child), 0);
}

function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: Math.round(kib('VmRSS') / 1024), peak: Math.round(kib('VmHWM') / 1024) };
}

function diskMiB(dir: string): number {
  try {
    return Math.round(Number(execFileSync('du', ['-sk', dir]).toString().split('\t')[0]) / 1024);
  } catch {
    return NaN;
  }
}

/**
 * The kube-apiserver's requests so far by verb and resource (`POST events`; APPLY is server-side
 * apply, DRY-RUN its dry runs), from its `apiserver_request_total` metric: every client's, the
 * controllers' included.
 */
async function apiserverRequests(kc: KubeConfig): Promise<Record<string, number>> {
  const options: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  const text = await new Promise<string>((resolve, reject) =>
    https
      .get(new URL('/metrics', kc.getCurrentCluster()!.server), options, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve(body));
      })
      .on('error', reject),
  );
  const counts: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const verb = line.includes('dry_run="All"') ? 'DRY-RUN' : (/verb="(\w+)"/.exec(line)?.[1] ?? '?');
    const subresource = /subresource="([\w-]+)"/.exec(line)?.[1];
    const resource = (/resource="([\w.-]+)"/.exec(line)?.[1] ?? '?') + (subresource ? `/${subresource}` : '');
    const key = `${verb} ${resource}`;
    counts[key] = (counts[key] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return counts;
}

/** Requests (`apiserverRequests`' delta) divided by `per`: their total, by verb, and the most made. */
function requestsSummary(requests: Record<string, number>, per: number, top = 6): string {
  const byVerb: Record<string, number> = {};
  for (const [key, count] of Object.entries(requests)) {
    const verb = key.slice(0, key.indexOf(' '));
    byVerb[verb] = (byVerb[verb] ?? 0) + count;
  }
  const largest = (counts: Record<string, number>, limit = Infinity) =>
    Object.entries(counts)
      .filter(([, count]) => count > 0)
      .sort(([, a], [, b]) => b - a)
      .slice(0, limit)
      .map(([name, count]) => `${name} ${(count / per).toFixed(1)}`)
      .join(', ');
  return `${(sum(requests) / per).toFixed(1)} (${largest(byVerb)}; most: ${largest(requests, top)})`;
}

/** A Temporal server histogram: observations, and their seconds in all. */
interface Timer {
  count: number;
  seconds: number;
}

/** A Prometheus histogram: a Timer and its cumulative buckets by upper bound (`le`). */
interface Histogram extends Timer {
  buckets: Map<string, number>;
}

function diffHistogram(before: Histogram, after: Histogram): Histogram {
  return {
    count: after.count - before.count,
    seconds: after.seconds - before.seconds,
    buckets: new Map([...after.buckets].map(([le, count]) => [le, count - (before.buckets.get(le) ?? 0)])),
  };
}

/** The smallest bucket bound, in ms, that holds `quantile` of the observations. */
function histogramBound({ count, buckets }: Histogram, quantile: number): string {
  const seconds = (le: string) => (le === '+Inf' ? Infinity : Number(le));
  const bounds = [...buckets].map(([le, cumulative]) => [seconds(le), cumulative]).sort(([a], [b]) => a - b);
  const [le] = bounds.find(([, cumulative]) => cumulative >= quantile * count) ?? [Infinity];
  return le === Infinity ? `> ${(bounds.at(-2)?.[0] ?? 0) * 1000}` : `≤ ${le * 1000}`;
}

/** The series of histogram `name` served at `url` that `selected` keeps, summed (none: empty). */
async function servedHistogram(
  url: string,
  name: string,
  selected: (label: (label: string) => string) => boolean,
): Promise<Histogram> {
  const text = await (await fetch(url)).text();
  const histograms = scrapedHistograms(text, name, (_, label) => (selected(label) ? name : undefined));
  return histograms.get(name) ?? { count: 0, seconds: 0, buckets: new Map() };
}

/**
 * The histograms of a Prometheus scrape whose names are `names` (a regex alternation), summed by
 * `keyOf(name, label)`; a series it gives no key is left out.
 */
function scrapedHistograms(
  text: string,
  names: string,
  keyOf: (name: string, label: (label: string) => string) => string | undefined,
): Map<string, Histogram> {
  const histograms = new Map<string, Histogram>();
  const series = new RegExp(`^(${names})_(bucket|sum|count)\\{([^}]*)\\} (\\S+)$`, 'gm');
  for (const [, name, kind, labels, value] of text.matchAll(series)) {
    const label = (label: string) => new RegExp(`${label}="([^"]*)"`).exec(labels)?.[1] ?? '';
    const key = keyOf(name, label);
    if (key === undefined) continue;
    const histogram = histograms.get(key) ?? { count: 0, seconds: 0, buckets: new Map() };
    if (kind === 'count') histogram.count += Number(value);
    else if (kind === 'sum') histogram.seconds += Number(value);
    else histogram.buckets.set(label('le'), (histogram.buckets.get(label('le')) ?? 0) + Number(value));
    histograms.set(key, histogram);
  }
  return histograms;
}

const sum = (values: Record<string, number>) => Object.values(values).reduce((a, b) => a + b, 0);
const fmt = (seconds: number) => seconds.toFixed(2);

async function main(): Promise<void> {
  // Measured first, on a machine the bench has not loaded yet.
  const machine = `${os.cpus().length} cores (calibration ${calibrationCpuMs()} ms of CPU)`;
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-'));
  console.log(`bench ${SCENARIO}: logs in ${workDir}`);
  const [temporal, cluster] = await Promise.all([
    ON_POSTGRES
      ? startTemporalPostgres(path.join(workDir, 'temporal'))
      : startTemporalDevServer(path.join(workDir, 'temporal'), {
          // On disk for the scale scenario, so that its size can be reported.
          dbFile: SCALE || API ? path.join(workDir, 'temporal', 'temporal.db') : undefined,
          metricsPort: await freePort(),
        }),
    BARE
      ? startControlPlane(path.join(workDir, 'kube'))
      : startSimulatedCluster(path.join(workDir, 'kube'), { nodes: SCALE ? 10 : 3 }),
  ]);
  const temporalPids = 'pids' in temporal ? temporal.pids() : { temporal: temporal.pid, postgres: undefined };
  /** PostgreSQL's tables and indexes, or the dev server's SQLite file. */
  const temporalDisk = () =>
    diskMiB('pgDataDir' in temporal ? path.join(temporal.pgDataDir, 'base') : path.join(workDir, 'temporal'));
  const stackName = ON_POSTGRES ? 'Temporal server + PostgreSQL' : 'Temporal dev server';
  const repos = Array.from({ length: REPOS }, (_, i) => (REPOS > 1 ? `oca/repo-${i}` : 'oca/bench'));
  const github = GITHUB_LIMITED ? await startGitHubEmulator() : undefined;
  const workerMetricsAddress = `127.0.0.1:${await freePort()}`;
  const env: Record<string, string> = {
    RUNBOAT_BUILD_NAMESPACE: 'bench',
    RUNBOAT_BUILD_DOMAIN: 'bench.test',
    RUNBOAT_TASK_QUEUE: 'bench',
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
    RUNBOAT_MAX_INITIALIZING: process.env.BENCH_MAX_INITIALIZING ?? (SCALE ? '20' : '10'),
    RUNBOAT_MAX_STARTED: SCALE ? String(SCALE_MAX_STARTED) : '1000',
    RUNBOAT_MAX_DEPLOYED: SCALE || API ? String(BUILDS) : '1000',
    RUNBOAT_EVICTION_INTERVAL: SCALE ? '30' : '3600',
    RUNBOAT_NO_CLEANUP_JOB: 'true',
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
    RUNBOAT_GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET,
    TEMPORAL_ADDRESS: temporal.address,
    KUBECONFIG: cluster.kubeconfigPath,
    LOG_LEVEL: 'warn',
    // As deployed (deploy/worker.yaml): the burst reads the worker's own timing of the builds' waits.
    RUNBOAT_WORKER_METRICS_ADDRESS: workerMetricsAddress,
    ...(github && {
      RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
      RUNBOAT_GITHUB_API_URL: github.url,
      RUNBOAT_GITHUB_TOKEN: 'bench',
      RUNBOAT_GITHUB_DEPLOYMENTS: process.env.BENCH_GITHUB_DEPLOYMENTS ?? 'false',
    }),
  };
  const config = loadConfig(env);
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  const [core, apps, batch] = [
    kc.makeApiClient(CoreV1Api),
    kc.makeApiClient(AppsV1Api),
    kc.makeApiClient(BatchV1Api),
  ];
  await core.createNamespace({ body: { metadata: { name: 'bench' } } });

  // The service as deployed: a worker process and an API process.
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection });
  const {
    worker,
    api: apiProcess,
    apiUrl,
    stop: stopService,
    restartWorker,
  } = await startServiceProcesses({
    logDir: workDir,
    env,
    connection,
  });
  const service = new CpuMeter({
    worker: worker.pid as number,
    api: apiProcess.pid as number,
    temporal: temporalPids.temporal,
    ...(temporalPids.postgres ? { postgres: temporalPids.postgres } : {}),
  });
  /** The Temporal side of a CPU sample: the server, and PostgreSQL when it runs. */
  const temporalCpu = (cpu: Record<string, number>) => cpu.temporal + (cpu.postgres ?? 0);
  const clusterPids = Object.fromEntries(cluster.daemons.map((d) => [d.name, d.process.pid as number]));
  const clusterMeter = new CpuMeter(clusterPids);
  if (CLUSTER_NICE) for (const pid of Object.values(clusterPids)) renice(pid, CLUSTER_NICE);

  const requested = new Map<string, number>();
  const responseMs: number[] = [];
  const deployed = new Map<string, number>();
  const initSucceeded = new Map<string, number>();
  /** When the bench saw each init Job created. */
  const initCreated = new Map<string, number>();
  const scaledUp = new Map<string, number>();
  const ready = new Map<string, number>();
  const initialized = new Set<string>();
  const watches: AbortController[] = [];
  let finishing = false;
  /**
   * A watch started again whenever kube-apiserver ends it (it does after 30-60 minutes), or a
   * long scale run would stop seeing Deployments and wait forever for the next one.
   */
  const keepWatching = async <T>(
    watchPath: string,
    query: Record<string, string>,
    handler: (type: string, object: T) => void,
  ): Promise<void> => {
    const restart = () => {
      if (!finishing) void keepWatching(watchPath, query, handler).catch(() => setTimeout(restart, 1_000));
    };
    watches.push(await watch.watch(watchPath, query, handler, restart));
  };
  const watch = new Watch(kc);
  const label = (o: { metadata?: { labels?: Record<string, string> } }) =>
    o.metadata?.labels?.['runboat/build'] ?? '';

  await keepWatching('/apis/apps/v1/namespaces/bench/deployments', {}, (type, d: V1Deployment) => {
    const name = label(d);
    if (type === 'DELETED') return;
    if (!deployed.has(name)) deployed.set(name, Date.now());
    if ((d.spec?.replicas ?? 0) === 1 && !scaledUp.has(name)) scaledUp.set(name, Date.now());
    if ((d.status?.readyReplicas ?? 0) === 1 && !ready.has(name)) ready.set(name, Date.now());
    if (d.metadata?.annotations?.['runboat/init-status'] === 'succeeded') initialized.add(name);
    // BENCH_CLUSTER=bare: play the Deployment controller.
    const replicas = d.spec?.replicas ?? 0;
    if (BARE && (d.status?.readyReplicas ?? 0) !== replicas) {
      void apps
        .replaceNamespacedDeploymentStatus({
          name: d.metadata!.name!,
          namespace: 'bench',
          body: { ...d, status: { replicas, readyReplicas: replicas, availableReplicas: replicas } },
        })
        .catch(() => undefined);
    }
  });
  await keepWatching(
    '/apis/batch/v1/namespaces/bench/jobs',
    { labelSelector: 'runboat/job-kind=initialize' },
    (type, job: V1Job) => {
      if (!initCreated.has(label(job))) initCreated.set(label(job), Date.now());
      const complete = job.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True');
      if (complete && !initSucceeded.has(label(job))) initSucceeded.set(label(job), Date.now());
      if (!BARE || type !== 'ADDED') return;
      // BENCH_CLUSTER=bare: play the Job controller.
      const now = new Date();
      const condition = (t: string) => ({
        type: t,
        status: 'True',
        reason: 'CompletionsReached',
        lastTransitionTime: now,
      });
      void batch
        .replaceNamespacedJobStatus({
          name: job.metadata!.name!,
          namespace: 'bench',
          body: {
            ...job,
            status: {
              startTime: now,
              completionTime: now,
              succeeded: 1,
              conditions: [condition('SuccessCriteriaMet'), condition('Complete')],
            },
          },
        })
        .catch(() => undefined);
    },
  );

  const verifier = await webhookVerifier(WEBHOOK_SECRET);
  const commitOf = (i: number): CommitInfo => ({
    repo: repos[i % REPOS],
    target_branch: '16.0',
    pr: i + 1,
    git_commit: (i + 1).toString(16).padStart(40, '0'),
  });
  /**
   * The `i`th pull request's webhook, signed. GitHub signs and sends on its own machines: a burst
   * signs its webhooks before it starts (`signWebhooks`), so that its measure is not of the bench
   * sharing the cores with the service.
   */
  const signedWebhooks = new Map<number, Promise<{ body: string; signature: string }>>();
  const signedWebhook = (i: number) => {
    let signed = signedWebhooks.get(i);
    if (!signed) {
      const commit = commitOf(i);
      const body = JSON.stringify({
        action: 'opened',
        number: commit.pr,
        pull_request: { head: { sha: commit.git_commit }, base: { ref: commit.target_branch } },
        repository: { full_name: commit.repo },
      });
      signed = verifier.sign(body).then((signature) => ({ body, signature }));
      signedWebhooks.set(i, signed);
    }
    return signed;
  };
  const signWebhooks = (count: number) =>
    Promise.all(Array.from({ length: count }, (_, i) => signedWebhook(i)));
  // node:http rather than fetch (undici), kept alive: the least client work a request can cost.
  const webhookAgent = new http.Agent({ keepAlive: true, maxSockets: BURST_CONCURRENCY });
  const sendPullRequestWebhook = async (i: number): Promise<string> => {
    const { body, signature } = await signedWebhook(i);
    const answer = await new Promise<string>((resolve, reject) => {
      const sending = http.request(
        `${apiUrl}/webhooks/github`,
        {
          method: 'POST',
          agent: webhookAgent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'x-github-event': 'pull_request',
            'x-hub-signature-256': signature,
          },
        },
        (response) => {
          let text = '';
          response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          response.on('end', () => resolve(text)).on('error', reject);
        },
      );
      sending.on('error', reject).end(body);
    });
    const { builds } = JSON.parse(answer) as { builds: string[] };
    return builds[0];
  };
  const request = async (i: number) => {
    const t = Date.now();
    const name = VIA_WEBHOOKS
      ? await sendPullRequestWebhook(i)
      : (await startBuild(client, config, commitOf(i))).name;
    responseMs.push(Date.now() - t);
    requested.set(name, t);
  };

  /**
   * Waits for `done` to hold. A service that never gets there (a worker failing every workflow
   * task, say) fails the run after WAIT_MS instead of holding it, and the cluster, for good.
   */
  const until = (what: string, done: () => boolean | Promise<boolean>, intervalMs = 20) =>
    waitUntil(what, async () => done(), { timeoutMs: WAIT_MS, logFile: workDir, intervalMs });

  const finish = async (keepLogs: boolean) => {
    finishing = true;
    webhookAgent.destroy();
    for (const w of watches) w.abort();
    await stopService();
    await connection.close();
    await Promise.all([temporal.stop(), cluster.stop(), github?.close()]);
    if (keepLogs)
      console.error(`bench ${SCENARIO} failed: the worker's and the API's logs are in ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  };

  // A scenario that fails still stops the processes it started: a crashed run once left a
  // worker of 1 GiB polling a dead server through the next run.
  let failed = true;
  try {
    if (SCALE) await scaleScenario();
    else if (API) await apiScenario();
    else if (IDLE) await idleScenario();
    else await burstScenario();
    failed = false;
  } finally {
    await finish(failed || Boolean(process.env.BENCH_KEEP));
  }

  async function burstScenario(): Promise<void> {
    if (VIA_WEBHOOKS) await signWebhooks(BUILDS);
    const cpu0 = service.sample();
    const clusterCpu0 = clusterMeter.sample();
    const requests0 = await apiserverRequests(kc);
    const disk0 = temporalDisk();
    const started = Date.now();
    const server0 = await temporalTimers();
    const handled0 = await webhooksHandled();
    const everyone = () => ({
      ...service.sample(),
      ...clusterMeter.sample(),
      bench: ownCpuSeconds(process.pid),
    });
    const answering0 = everyone();
    const answeringStarted = Date.now();
    await forEachAtOnce(BUILDS, BURST_CONCURRENCY, request);
    const answering = { ms: Date.now() - answeringStarted, cpu: growth(answering0, everyone()) };
    const startsServerSide = server0 && diffTimers(server0, (await temporalTimers())!);
    const handled = diffHistogram(handled0, await webhooksHandled());
    await until(`${BUILDS} Deployments`, () => deployed.size >= BUILDS);
    const deployPhase = {
      ms: Date.now() - started,
      cpu: growth(cpu0, service.sample()),
      clusterCpu: growth(clusterCpu0, clusterMeter.sample()),
    };
    await until(`${BUILDS} builds started`, () => ready.size >= BUILDS, 100);
    const allStartedMs = Date.now() - started;
    const cpu = growth(cpu0, service.sample());
    const clusterCpu = growth(clusterCpu0, clusterMeter.sample());
    const requests = growth(requests0, await apiserverRequests(kc));

    const counts = await historyCounts(
      [...requested.keys()].slice(0, 10).map((name) => ({ workflowId: buildWorkflowId(name) })),
    );
    const firstMoments = await Promise.all([...requested.keys()].map(firstSteps));
    const githubOutcome = github && (await githubReports(started, cpu0));
    await sleep(2_000);

    const evictionCpu0 = service.sample();
    const evictionStarted = Date.now();
    const plan = await client.workflow.execute<typeof evictionWorkflow>('evictionWorkflow', {
      workflowId: 'bench-eviction',
      taskQueue: 'bench',
      args: [{ maxStarted: 6, maxDeployed: MAX_DEPLOYED_AFTER }],
    });
    const evictionRunMs = Date.now() - evictionStarted;
    await until(
      `eviction down to ${MAX_DEPLOYED_AFTER} Deployments`,
      async () =>
        (await apps.listNamespacedDeployment({ namespace: 'bench' })).items.length <= MAX_DEPLOYED_AFTER,
      100,
    );
    const evictionMs = Date.now() - evictionStarted;
    const evictionCpu = sum(growth(evictionCpu0, service.sample()));
    // Again, once visibility shows the result: the steady state, where nothing is to be done.
    await sleep(3_000);
    const idleEvictionCpu0 = service.sample();
    const idleEvictionStarted = Date.now();
    await client.workflow.execute<typeof evictionWorkflow>('evictionWorkflow', {
      workflowId: 'bench-eviction-again',
      taskQueue: 'bench',
      args: [{ maxStarted: 6, maxDeployed: MAX_DEPLOYED_AFTER }],
    });
    const idleEvictionMs = Date.now() - idleEvictionStarted;
    const idleEvictionCpu = sum(growth(idleEvictionCpu0, service.sample()));
    const workerMemory = memoryMiB(worker.pid as number);

    const deployLatency = [...requested].map(([name, t]) => (deployed.get(name) as number) - t);
    const scaleLatency = [...initSucceeded].map(([name, t]) => (scaledUp.get(name) as number) - t);
    const upLatency = [...requested].map(([name, t]) => (ready.get(name) as number) - t);
    const waits = await newBuildsWaits();
    const row = (what: string, values: number[], target: string) =>
      `| ${what} | ${percentile(values, 50)} | ${percentile(values, 95)} | ${percentile(values, 99)} | ${target} |`;
    console.log(
      `\n${BUILDS} builds (${VIA_WEBHOOKS ? 'signed webhooks through the API' : 'started by the Temporal client'}, ` +
        `${BURST_CONCURRENCY} at a time), ` +
        `${BARE ? 'bare control plane' : `simulated cluster (controller-manager at ${CONTROLLER_MANAGER_QPS.qps} requests/s)`}${CLUSTER_NICE ? ` at nice ${CLUSTER_NICE}` : ''}, max_initializing ${config.maxInitializing}, ` +
        `${machine}\n`,
    );
    console.log('| measure (ms) | p50 | p95 | p99 | target |');
    console.log('| --- | --- | --- | --- | --- |');
    console.log(row(`${VIA_WEBHOOKS ? 'webhook' : 'start'} response`, responseMs, 'p99 ≤ 150'));
    console.log(
      row(`${VIA_WEBHOOKS ? 'webhook' : 'start request'} → Deployment exists`, deployLatency, 'p50 ≤ 3000'),
    );
    console.log(row('init Job succeeded → Deployment scaled to 1', scaleLatency, '≤ 150 idle'));
    if (VIA_WEBHOOKS) {
      const within = (quantile: number) => histogramBound(handled, quantile);
      console.log(
        `| — the same, inside the API (its histogram: mean; p50, p95, p99 within) | ${Math.round((handled.seconds / handled.count) * 1000)}; ${within(0.5)} | ${within(0.95)} | ${within(0.99)} | |`,
      );
    }
    console.log(
      row(`${VIA_WEBHOOKS ? 'webhook' : 'start request'} → build up (Deployment ready)`, upLatency, ''),
    );
    {
      const within = (quantile: number) => histogramBound(waits, quantile);
      console.log(
        `| — the same, inside the worker (runboat_build_ready_seconds{request="new"}: ${waits.count} waits, mean; p50, p95, p99 within) | ${Math.round((waits.seconds / waits.count) * 1000)}; ${within(0.5)} | ${within(0.95)} | ${within(0.99)} | |`,
      );
    }
    for (const step of Object.keys(firstMoments[0]) as (keyof (typeof firstMoments)[0])[])
      console.log(
        row(
          `— ${step}`,
          firstMoments.map((moments) => moments[step]),
          '',
        ),
      );
    const slots = initSlotCycle();
    console.log(row('init Job created → succeeded (the cluster)', slots.jobRun, ''));
    console.log(row('init Job succeeded → next Job created in its slot', slots.handoff, ''));
    console.log(`\n| other | value |\n| --- | --- |`);
    console.log(`| all ${BUILDS} builds started (ready) | ${allStartedMs} ms |`);
    console.log(
      `| init Jobs: first created, last succeeded; init slots busy | ${slots.firstCreated - started} ms, ` +
        `${slots.lastSucceeded - started} ms; ${slots.busy}% |`,
    );
    console.log(
      `| CPU per build, service (worker+API+Temporal) | ${fmt(sum(cpu) / BUILDS)} s ` +
        `(worker ${fmt(cpu.worker / BUILDS)}, API ${fmt(cpu.api / BUILDS)}, ${stackName} ${fmt(temporalCpu(cpu) / BUILDS)}) |`,
    );
    const perBuild = (cpuOf: Record<string, number>) =>
      Object.entries(cpuOf)
        .map(([name, s]) => `${name} ${fmt(s / BUILDS)}`)
        .join(', ');
    console.log(
      `| CPU per build, cluster (excluded) | ${fmt(sum(clusterCpu) / BUILDS)} s (${perBuild(clusterCpu)}) |`,
    );
    console.log(
      `| until every Deployment exists (${deployPhase.ms} ms): CPU per build, service; cluster | ` +
        `${fmt(sum(deployPhase.cpu) / BUILDS)} s (${perBuild(deployPhase.cpu)}); ` +
        `${fmt(sum(deployPhase.clusterCpu) / BUILDS)} s (${perBuild(deployPhase.clusterCpu)}) |`,
    );
    console.log(`| kube-apiserver requests per build, all clients | ${requestsSummary(requests, BUILDS)} |`);
    console.log(
      `| per build life (mean of ${counts.sampled}): history events / workflow tasks / activities / local activities | ` +
        `${counts.events} / ${counts.workflowTasks} / ${counts.activities} / ${counts.localActivities} |`,
    );
    console.log(
      `| eviction ${BUILDS} → ${MAX_DEPLOYED_AFTER} deployed (stops ${plan.stop.length}, undeploys ${plan.undeploy.length}) | ` +
        `run ${evictionRunMs} ms, converged ${evictionMs} ms, CPU ${fmt(evictionCpu)} s |`,
    );
    console.log(
      `| eviction again, nothing to do (${BUILDS} running builds) | run ${idleEvictionMs} ms, CPU ${fmt(idleEvictionCpu)} s |`,
    );
    console.log(`| worker RSS now / peak | ${workerMemory.rss} / ${workerMemory.peak} MiB |`);
    // Whether the answers waited on the cores or on something else (the cores' full share is 2).
    const coresBusy = (seconds: number) => (seconds / (answering.ms / 1000)).toFixed(2);
    console.log(
      `| cores busy while the ${BUILDS} ${VIA_WEBHOOKS ? 'webhooks' : 'starts'} were answered (${answering.ms} ms) | ` +
        `${coresBusy(sum(answering.cpu))} of ${os.cpus().length} (` +
        Object.entries(answering.cpu)
          .sort(([, a], [, b]) => b - a)
          .map(([name, seconds]) => `${name} ${coresBusy(seconds)}`)
          .join(', ') +
        ') |',
    );
    if (startsServerSide) {
      console.log(
        `\nWhile the ${BUILDS} ${VIA_WEBHOOKS ? 'webhooks' : 'starts'} were answered, inside the ${stackName}:\n`,
      );
      console.log('| timer | count | mean ms | total s |\n| --- | --- | --- | --- |');
      for (const [timer, { count, seconds }] of startsServerSide)
        console.log(
          `| ${timer} | ${count} | ${((seconds / count) * 1000).toFixed(1)} | ${seconds.toFixed(2)} |`,
        );
    }
    const disk = temporalDisk();
    console.log(
      `| ${ON_POSTGRES ? 'PostgreSQL tables and indexes (base/)' : 'Temporal SQLite'}: before → after | ` +
        `${disk0} → ${disk} MiB (${Math.round(((disk - disk0) / BUILDS) * 1000)} MiB per 1,000 builds) |`,
    );

    if (githubOutcome) console.log(githubOutcome);

    if (process.env.BENCH_HISTORY) {
      const [name] = requested.keys();
      const { events } = await client.workflow.getHandle(buildWorkflowId(name)).fetchHistory();
      const t0 = eventMs(events?.[0]);
      for (const event of events ?? []) {
        const t = eventMs(event);
        const activity = event.activityTaskScheduledEventAttributes?.activityType?.name ?? '';
        const marker = event.markerRecordedEventAttributes?.markerName ?? '';
        console.log(
          `${(t - t0).toFixed(0).padStart(6)} ms  ${temporalProto.api.enums.v1.EventType[event.eventType ?? 0]} ${activity}${marker}`,
        );
      }
    }
  }

  /**
   * BENCH_GITHUB=limited: waits until GitHub has every build's success status (or the wait is
   * over), then tells what it accepted, refused, and never got, and the service's CPU until then.
   */
  async function githubReports(started: number, cpu0: Record<string, number>): Promise<string> {
    const emulated = github!;
    const succeeded = () =>
      new Set(
        emulated.writes
          .filter(
            (write) => write.status < 400 && write.state === 'success' && write.path.includes('/statuses/'),
          )
          .map((write) => write.path),
      );
    const waitStarted = Date.now();
    // A service that drops what GitHub refused sends nothing more: two quiet minutes end the wait.
    const quiet = () => Date.now() - Math.max(waitStarted, emulated.writes.at(-1)?.at ?? 0) > 120_000;
    while (succeeded().size < BUILDS && Date.now() - waitStarted < GITHUB_WAIT_MS && !quiet())
      await sleep(200);
    const cpu = growth(cpu0, service.sample());
    const statuses = emulated.writes.filter((write) => write.path.includes('/statuses/'));
    const accepted = statuses.filter((write) => write.status < 400);
    const lastAt = Math.max(
      ...accepted.filter((write) => write.state === 'success').map((write) => write.at),
    );
    // A build whose last status GitHub accepted is not its final one shows that one forever.
    const lastOf = new Map(accepted.map((write) => [write.path, write.state]));
    const shown = [...lastOf.values()].filter((state) => state === 'success').length;
    // The reporter's every run (it continues as new), where it exists.
    const reporterRuns: Array<{ workflowId: string; runId: string }> = [];
    for await (const run of client.workflow.list({ query: `WorkflowType = 'githubReportsWorkflow'` }))
      reporterRuns.push({ workflowId: run.workflowId, runId: run.runId });
    const reporter = reporterRuns.length ? (await historyCounts(reporterRuns)).totals : undefined;
    return [
      `\nGitHub (loopback, its secondary rate limit: 80 writes a minute, 500 an hour), commit statuses` +
        `${config.githubDeployments ? ' and deployments' : ''}, ${config.githubWritesPerMinute ?? 'unpaced'} writes a minute at most:\n`,
      '| measure | value |',
      '| --- | --- |',
      `| writes accepted / refused (all) | ${emulated.writes.filter((write) => write.status < 400).length} / ${emulated.writes.filter((write) => write.status >= 400).length} |`,
      `| commit statuses accepted / refused | ${accepted.length} / ${statuses.length - accepted.length} |`,
      `| builds GitHub shows success / another state / nothing | ${shown} / ${lastOf.size - shown} / ${BUILDS - lastOf.size} |`,
      `| burst start → last success status accepted | ${shown ? `${lastAt - started} ms` : 'none'} |`,
      `| the reporter workflow, per build: signals / workflow tasks / activities / events (runs) | ${reporter ? `${fmt(reporter.signals / BUILDS)} / ${fmt(reporter.workflowTasks / BUILDS)} / ${fmt(reporter.activities / BUILDS)} / ${fmt(reporter.events / BUILDS)} (${reporterRuns.length})` : 'none (statuses posted by the build steps)'} |`,
      `| CPU per build, service, until then | ${fmt(sum(cpu) / BUILDS)} s (worker ${fmt(cpu.worker / BUILDS)}, API ${fmt(cpu.api / BUILDS)}, ${stackName} ${fmt(temporalCpu(cpu) / BUILDS)}) |`,
    ].join('\n');
  }

  /**
   * Target 3: one build at a time on an otherwise idle system, each sent once the one before
   * is ready. The first is the cold one (a worker's first build); the others are warm.
   */
  async function idleScenario(): Promise<void> {
    for (let i = 0; i < BUILDS; i++) {
      await request(i);
      const name = [...requested.keys()][i];
      await until(`build ${name} started`, () => ready.has(name), 10);
    }
    const names = [...requested.keys()];
    const deploy = names.map((name) => (deployed.get(name) as number) - (requested.get(name) as number));
    const scale = names.map((name) => (scaledUp.get(name) as number) - (initSucceeded.get(name) as number));
    const steps = await Promise.all(names.map(firstSteps));
    const warm = (values: number[]) => `${percentile(values.slice(1), 50)} / ${Math.max(...values.slice(1))}`;
    console.log(
      `
one build at a time on an idle system (${BUILDS}: the first cold, ${BUILDS - 1} warm), ` +
        `${VIA_WEBHOOKS ? 'signed webhooks through the API' : 'started by the Temporal client'}, ` +
        `${BARE ? 'bare control plane' : 'simulated cluster'}, ${machine}\n`,
    );
    console.log('| measure (ms) | cold | warm p50 / max | target |\n| --- | --- | --- | --- |');
    console.log(`| webhook response | ${responseMs[0]} | ${warm(responseMs)} | |`);
    console.log(`| webhook → Deployment exists | ${deploy[0]} | ${warm(deploy)} | ≤ 150 |`);
    console.log(`| init Job succeeded → Deployment scaled to 1 | ${scale[0]} | ${warm(scale)} | ≤ 150 |`);
    for (const step of Object.keys(steps[0]) as (keyof (typeof steps)[0])[]) {
      const values = steps.map((s) => s[step]);
      console.log(`| ${step} | ${values[0]} | ${warm(values)} | |`);
    }
  }

  /** Where a build's first moments go, from its history's event times (ms after the request). */
  async function firstSteps(name: string) {
    const { EventType } = temporalProto.api.enums.v1;
    const events = (await client.workflow.getHandle(buildWorkflowId(name)).fetchHistory()).events ?? [];
    const at = (type: number) =>
      Math.round(eventMs(events.find((e) => e.eventType === type)) - (requested.get(name) as number));
    return {
      'request → workflow started': at(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
      'request → first workflow task started': at(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
      'request → deploy activity scheduled': at(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
      'request → deploy activity started': at(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED),
      'request → Deployment exists (bench watch)':
        (deployed.get(name) as number) - (requested.get(name) as number),
      'request → deploy activity completed': at(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
    };
  }

  /**
   * Where an init slot's cycle goes while builds wait for slots: the Job's run in the cluster
   * (created → succeeded), and the service's handoff from a Job's success to the next Job
   * created (the slot released, granted to the next build, its Job rendered and applied).
   * Slots are granted in request order, so the n-th success frees the slot of the
   * (n + max_initializing)-th Job.
   */
  function initSlotCycle() {
    const jobRun = [...initSucceeded].map(([name, t]) => t - (initCreated.get(name) as number));
    const created = [...initCreated.values()].sort((a, b) => a - b);
    const succeeded = [...initSucceeded.values()].sort((a, b) => a - b);
    const span = (succeeded.at(-1) as number) - created[0];
    const busy = Math.round((100 * jobRun.reduce((a, b) => a + b, 0)) / (span * config.maxInitializing));
    const handoff = created
      .slice(config.maxInitializing)
      .map((t, n) => t - succeeded[n])
      .filter((ms) => ms >= 0);
    return { jobRun, handoff, busy, firstCreated: created[0], lastSucceeded: succeeded.at(-1) as number };
  }

  /** Events of each kind in the histories of `runs` (workflow id and run id), per run. */
  async function historyCounts(runs: Array<{ workflowId: string; runId?: string }>) {
    const { EventType } = temporalProto.api.enums.v1;
    const totals = { events: 0, workflowTasks: 0, activities: 0, localActivities: 0, signals: 0 };
    for (const { workflowId, runId } of runs) {
      const events = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
      totals.events += events.length;
      for (const event of events) {
        if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) totals.workflowTasks++;
        if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) totals.activities++;
        if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) totals.signals++;
        if (event.markerRecordedEventAttributes?.markerName === 'core_local_activity')
          totals.localActivities++;
      }
    }
    const mean = (n: number) => Math.round((n / runs.length) * 10) / 10;
    return {
      sampled: runs.length,
      totals,
      events: mean(totals.events),
      workflowTasks: mean(totals.workflowTasks),
      activities: mean(totals.activities),
      localActivities: mean(totals.localActivities),
    };
  }

  async function scaleScenario(): Promise<void> {
    // Populate: webhooks in waves of max_initializing x 2, until BUILDS or the time is up.
    const deadline = Date.now() + SCALE_MINUTES * 60_000;
    const started = Date.now();
    const cpu0 = service.sample();
    let sent = 0;
    let lastReport = 0;
    const wave = config.maxInitializing * 2;
    while (sent < BUILDS && Date.now() < deadline) {
      // Keep at most two waves in flight beyond what is initialized.
      if (sent - initialized.size >= wave * 2) {
        await sleep(250);
      } else {
        const n = Math.min(wave, BUILDS - sent);
        await Promise.all(Array.from({ length: n }, (_, k) => request(sent + k)));
        sent += n;
      }
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        console.log(
          `  ${Math.round((Date.now() - started) / 1000)} s: sent ${sent}, deployed ${deployed.size}, initialized ${initialized.size}, ` +
            `RSS worker ${memoryMiB(worker.pid as number).rss} / Temporal ${memoryMiB(temporalPids.temporal).rss} / ` +
            `kube-apiserver ${memoryMiB(clusterPids['kube-apiserver']).rss} / etcd ${memoryMiB(clusterPids.etcd).rss} MiB, ` +
            `disk Temporal ${temporalDisk()} / etcd ${diskMiB(cluster.etcdDataDir)} MiB, ` +
            `service CPU ${fmt(sum(growth(cpu0, service.sample())))} s`,
        );
      }
    }
    // Wait for the builds sent to be initialized (bounded: a stuck build must not hang the bench).
    const settleDeadline = Date.now() + Math.min(5, SCALE_MINUTES) * 60_000;
    while (initialized.size < sent && Date.now() < settleDeadline) await sleep(500);
    const populateMs = Date.now() - started;
    const populateCpu = growth(cpu0, service.sample());
    const n = initialized.size;
    const filled =
      SCALE_FILL > requested.size
        ? await fill(0, SCALE_FILL - requested.size, (i) => repos[i % REPOS])
        : { added: 0, ms: 0 };
    const open = async () => (await client.workflow.count(runningBuildsQuery('bench'))).count;
    const total = await open();
    // Let eviction bring started builds within max_started, then let everything settle.
    await sleep(45_000);

    const memory: Record<string, { rss: number; peak: number }> = {
      worker: memoryMiB(worker.pid as number),
      api: memoryMiB(apiProcess.pid as number),
      temporal: memoryMiB(temporalPids.temporal),
      ...(temporalPids.postgres
        ? { 'postgres (all its processes)': { rss: treeRssMiB(temporalPids.postgres), peak: NaN } }
        : {}),
      ...Object.fromEntries(Object.entries(clusterPids).map(([name, pid]) => [name, memoryMiB(pid)])),
    };
    const disk = {
      temporal: temporalDisk(),
      etcd: diskMiB(cluster.etcdDataDir),
    };

    // Idle: nothing happens but the eviction schedule (every 30 s) and the services' timers.
    const idle0 = service.sample();
    const idleCluster0 = clusterMeter.sample();
    await sleep(60_000);
    const idle = growth(idle0, service.sample());
    const idleCluster = growth(idleCluster0, clusterMeter.sample());

    // One eviction run within the limits (the steady state), then one that must undeploy 5%.
    const eviction = async (maxDeployed: number) => {
      const t = Date.now();
      const plan = await client.workflow.execute<typeof evictionWorkflow>('evictionWorkflow', {
        workflowId: `bench-eviction-${t}`,
        taskQueue: 'bench',
        args: [{ maxStarted: SCALE_MAX_STARTED, maxDeployed }],
      });
      return { ms: Date.now() - t, plan };
    };
    const steady = await eviction(Math.max(BUILDS, total));
    const probe = await listAndQueryTimes([...initialized]);
    // A burst past max_deployed (7,500 → 7,000 asks for 500 undeploys): as many as the real
    // builds allow: only stopped builds are undeployed (the 150 started stay, and the
    // visibility-only ones are initializing, which eviction never picks).
    const realStopped = Math.max(0, n - SCALE_MAX_STARTED);
    if (realStopped === 0)
      console.log(`only ${n} real builds, all started: the over-limit eviction acts on none of them`);
    // Two later runs are left LATER_UNDEPLOYS of them each (see below).
    const undeploys = Math.max(1, Math.min(500, realStopped - 2 * LATER_UNDEPLOYS));
    // Deployed means any status but undeploying (SPEC §3): back within the limit once the builds
    // have taken their orders, which happens during the run; their workflows end once their
    // objects are deleted. Both times are read afterwards from the evicted builds' histories
    // (the order's update accepted, the workflow's close): counting visibility meanwhile would
    // load the dev server's one SQLite connection that the eviction itself waits on.
    const deployedNow = async () =>
      (await client.workflow.count(`${runningBuildsQuery('bench')} AND RunboatStatus != 'undeploying'`))
        .count;
    // Counted now, not from `total`: visibility may not have shown every build of the fill then.
    const target = (await deployedNow()) - undeploys;
    const [overCpu0, overCluster0, overRequests0] = [
      service.sample(),
      clusterMeter.sample(),
      await apiserverRequests(kc),
    ];
    const evictionT0 = Date.now();
    const over = await eviction(target);
    const evictedTimes = await evictionTimes(over.plan.undeploy);
    const deployedBack = Math.round(Math.max(...evictedTimes.map((t) => t.taken)) - evictionT0);
    const closed = Math.round(Math.max(...evictedTimes.map((t) => t.ended)) - evictionT0);
    // Where the over-limit eviction's time goes: CPU of every process and the cluster's calls,
    // from its start until every evicted build's workflow ended.
    const overCpu = {
      ...growth(overCpu0, service.sample()),
      ...growth(overCluster0, clusterMeter.sample()),
    };
    const overRequests = growth(overRequests0, await apiserverRequests(kc));

    // A failure here (a 503 from a starved dev server) must not lose the rows measured above.
    const latencies = await apiLatencies(repos[0]).catch((error: unknown) => {
      console.log(`API latencies not measured: ${String(error)}`);
      return [];
    });

    // A new webhook at this scale: webhook → Deployment.
    const before = requested.size;
    await request(BUILDS + 1);
    const [newName] = [...requested.keys()].slice(before);
    await until(`the Deployment of ${newName}`, () => deployed.has(newName));
    const newBuildMs = (deployed.get(newName) as number) - (requested.get(newName) as number);

    // A later run over the limit, as at OCA, where each new build pushes 7,000 deployed over:
    // what one run acting on a few builds costs, the previous over-limit run not long before.
    const later = await eviction((await deployedNow()) - LATER_UNDEPLOYS);
    // The same after the worker restarted (a new version deployed), once a run within the limits
    // has run on it as the schedule's next does, and a moment has passed (the worker's eviction
    // index lists every build on its first run, in the background): what the first run over
    // the limits costs a fresh worker. Last: the service's CPU meter follows the first worker.
    await restartWorker();
    await eviction(Math.max(BUILDS, total));
    await sleep(15_000);
    const afterRestart = await eviction((await deployedNow()) - LATER_UNDEPLOYS);

    console.log(
      `\nscale on the ${stackName}: ${n} builds initialized (of ${BUILDS} asked, ${sent} sent) across ${REPOS} repos in ` +
        `${Math.round(populateMs / 1000)} s, max_initializing ${config.maxInitializing}, max_started 150, ` +
        `${machine}; ${total} open build workflows` +
        (filled.added
          ? ` (${filled.added} visibility-only ones added in ${Math.round(filled.ms / 1000)} s)`
          : '') +
        '\n',
    );
    console.log('| measure | value |\n| --- | --- |');
    console.log(
      `| populate: CPU per build, service | ${fmt(sum(populateCpu) / n)} s (worker ${fmt(populateCpu.worker / n)}, ` +
        `API ${fmt(populateCpu.api / n)}, ${stackName} ${fmt(temporalCpu(populateCpu) / n)}) |`,
    );
    for (const [name, m] of Object.entries(memory))
      console.log(`| RSS ${name} (now / peak) | ${m.rss} / ${m.peak} MiB |`);
    console.log(
      `| disk: ${ON_POSTGRES ? 'PostgreSQL tables (base/)' : 'Temporal SQLite'} / etcd | ${disk.temporal} / ${disk.etcd} MiB |`,
    );
    console.log(
      `| idle CPU over 60 s, service | ${fmt((sum(idle) / 60) * 100)}% of one core (` +
        Object.entries(idle)
          .map(([name, s]) => `${name} ${fmt(s)} s`)
          .join(', ') +
        ') |',
    );
    console.log(
      `| idle CPU over 60 s, cluster (excluded) | ${fmt((sum(idleCluster) / 60) * 100)}% of one core |`,
    );
    console.log(`| eviction run within limits | ${steady.ms} ms |`);
    console.log(
      `| eviction run to ${target} deployed (undeploys ${over.plan.undeploy.length}, stops ${over.plan.stop.length}) | ` +
        `run ${over.ms} ms; deployed back to ${target} at ${deployedBack} ms; their workflows ended (objects deleted) at ${closed} ms |`,
    );
    console.log(
      `| over-limit eviction: CPU until its builds ended | ` +
        Object.entries(overCpu)
          .map(([name, s]) => `${name} ${fmt(s)} s`)
          .join(', ') +
        ` |`,
    );
    console.log(`| over-limit eviction: kube-apiserver requests | ${requestsSummary(overRequests, 1)} |`);
    console.log(
      `| a later over-limit eviction run (undeploys ${later.plan.undeploy.length}, stops ${later.plan.stop.length}) | ${later.ms} ms |`,
    );
    console.log(
      `| the same, first over-limit run of a restarted worker (undeploys ${afterRestart.plan.undeploy.length}) | ${afterRestart.ms} ms |`,
    );
    console.log(`| list every open build: running rows only | ${probe.rowsListMs} ms |`);
    console.log(
      `| list every open build as eviction does (rows started or closed in the last minute too) | ${probe.listMs} ms |`,
    );
    for (const { what, ms } of probe.queries)
      console.log(`| ${what} p50 / p99 | ${percentile(ms, 50)} / ${percentile(ms, 99)} ms |`);
    for (const { what, ms } of latencies)
      console.log(`| ${what} p50 / p99 | ${percentile(ms, 50)} / ${percentile(ms, 99)} ms |`);
    console.log(`| new webhook → Deployment at this scale | ${newBuildMs} ms |`);
  }

  /**
   * When each of the evicted `builds` took its order (the `evict` update accepted) and when its
   * workflow ended, from their histories once they all ended (within 5 minutes).
   */
  async function evictionTimes(builds: string[]): Promise<Array<{ taken: number; ended: number }>> {
    const { EventType } = temporalProto.api.enums.v1;
    const times: Array<{ taken: number; ended: number }> = [];
    await forEachAtOnce(builds.length, 8, async (i) => {
      const handle = client.workflow.getHandle(buildWorkflowId(builds[i]));
      await client.withDeadline(Date.now() + 300_000, () => handle.result()).catch(() => undefined);
      const events = (await handle.fetchHistory()).events ?? [];
      const accepted = events.find(
        (e) =>
          e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED &&
          e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'evict',
      );
      times.push({ taken: eventMs(accepted), ended: eventMs(events.at(-1)) });
    });
    return times;
  }

  /**
   * What an eviction run that must act reads (the listing of every open build), and a real
   * build's state query, one at a time and eight at a time: what the API's commands (and
   * eviction, before its orders) ask each build.
   */
  async function listAndQueryTimes(realBuilds: string[]) {
    let t = Date.now();
    for await (const workflow of client.workflow.list({ query: runningBuildsQuery(config.taskQueue) }))
      void workflow;
    const rowsListMs = Date.now() - t;
    t = Date.now();
    await listRunningBuilds(client, config.taskQueue);
    const listMs = Date.now() - t;
    const timedQuery = async (name: string) => {
      const t0 = Date.now();
      await client.workflow.getHandle(buildWorkflowId(name)).query(buildStateQuery);
      return Date.now() - t0;
    };
    const sample = realBuilds.slice(0, 40);
    const oneAtATime: number[] = [];
    for (const name of sample.slice(0, 20)) oneAtATime.push(await timedQuery(name));
    const eightAtATime: number[] = [];
    const rest = sample.slice(20);
    for (let i = 0; i < rest.length; i += 8)
      eightAtATime.push(...(await Promise.all(rest.slice(i, i + 8).map(timedQuery))));
    return {
      rowsListMs,
      listMs,
      queries: [
        { what: "a real build's query, one at a time", ms: oneAtATime },
        { what: "a real build's query, eight at a time", ms: eightAtATime },
      ],
    };
  }

  /** Open build workflows `from` to `until` (excluded), never run (scripts/visibility-fill.ts). */
  function fill(from: number, until: number, repoOf: (i: number) => string) {
    const settings = lifecycleSettings(config);
    return fillVisibility(client, { taskQueue: config.taskQueue, settings, repoOf }, from, until);
  }

  /**
   * The API's latencies as its users meet them (issue 10, target 4), in ms: API_REQUESTS
   * requests one after another to each endpoint, then 5 loads in chromium of the home page
   * (from navigation to its status and repos drawn) and of `repo`'s board (to every card drawn).
   */
  async function apiLatencies(repo: string): Promise<Array<{ what: string; ms: number[] }>> {
    const visibility0 = await visibilityRequests();
    try {
      return await timedApiRequests(repo);
    } finally {
      const visibility = await visibilityRequests();
      console.log(
        visibility && visibility0
          ? `  visibility queries while timed, all clients: ${visibility.queries - visibility0.queries}, ` +
              `refused by the namespace's rate limit: ${visibility.refused - visibility0.refused}`
          : '  visibility queries while timed: not counted (the dev server only)',
      );
    }
  }

  /**
   * The Temporal dev server's own count of visibility lists and counts, and of those it refused
   * past the namespace's rate limit (the client asks again 1.7 s later).
   */
  async function visibilityRequests(): Promise<{ queries: number; refused: number } | undefined> {
    const text = await temporalMetrics();
    if (text === undefined) return undefined;
    const total = (metric: string) =>
      [
        ...text.matchAll(
          new RegExp(`^${metric}\\{[^}]*operation="(?:List|Count)WorkflowExecutions"[^}]*\\} (\\d+)$`, 'gm'),
        ),
      ].reduce((sum, [, count]) => sum + Number(count), 0);
    return { queries: total('service_requests'), refused: total('service_errors_resource_exhausted') };
  }

  /** The API's own timing of the webhooks it answered (its `/metrics` histogram). */
  function webhooksHandled(): Promise<Histogram> {
    return servedHistogram(
      `${apiUrl}/metrics`,
      'runboat_http_request_duration_seconds',
      (label) => label('route') === '/webhooks/github',
    );
  }

  /** The worker's own timing of the new builds' waits, webhook to started (its `/metrics` histogram). */
  function newBuildsWaits(): Promise<Histogram> {
    return servedHistogram(
      `http://${workerMetricsAddress}/metrics`,
      'runboat_build_ready_seconds',
      (label) => label('request') === 'new',
    );
  }

  /** The Temporal dev server's Prometheus scrape (undefined on PostgreSQL: no metrics port). */
  async function temporalMetrics(): Promise<string | undefined> {
    const url = 'metricsUrl' in temporal ? temporal.metricsUrl : undefined;
    return url ? (await fetch(url)).text() : undefined;
  }

  /**
   * The Temporal dev server's timers (histograms: count and seconds in all) that say where a
   * start waits inside the server: its handling by the frontend and the history service, the
   * persistence writes, and the shard's lock and I/O semaphore every write of a shard takes.
   */
  async function temporalTimers(): Promise<Map<string, Timer> | undefined> {
    const text = await temporalMetrics();
    if (text === undefined) return undefined;
    const served =
      /^(StartWorkflowExecution|RespondWorkflowTaskCompleted|RespondActivityTaskCompleted|PollWorkflowTaskQueue)$/;
    return scrapedHistograms(
      text,
      'service_latency|persistence_latency|lock_latency|semaphore_latency',
      (name, label) =>
        name === 'service_latency' && !served.test(label('operation'))
          ? undefined
          : `${name} ${label('service_name')} ${label('operation')}`,
    );
  }

  function diffTimers(before: Map<string, Timer>, after: Map<string, Timer>): Array<[string, Timer]> {
    return [...after]
      .map(([timer, { count, seconds }]): [string, Timer] => [
        timer,
        {
          count: count - (before.get(timer)?.count ?? 0),
          seconds: seconds - (before.get(timer)?.seconds ?? 0),
        },
      ])
      .filter(([, { count, seconds }]) => count > 0 && seconds > 0.01)
      .sort(([, a], [, b]) => b.seconds - a.seconds);
  }

  async function timedApiRequests(repo: string): Promise<Array<{ what: string; ms: number[] }>> {
    const timed = async (url: string) => {
      const ms: number[] = [];
      for (let i = 0; i < API_REQUESTS; i++) {
        const t = Date.now();
        const response = await fetch(url);
        await response.arrayBuffer();
        if (!response.ok) throw new Error(`${url} answered ${response.status}`);
        ms.push(Date.now() - t);
      }
      return ms;
    };
    const boardUrl = `${apiUrl}/api/v1/builds?repo=${repo}`;
    // The first request may find the API's index behind by every change since its last read
    // (thousands after a fill), and answer 503 while the read goes on: retried as its
    // Retry-After says, as a browser's page does, and told.
    const first = Date.now();
    let refused = 0;
    let boardResponse = await fetch(boardUrl);
    while (boardResponse.status === 503 && Date.now() - first < 120_000) {
      refused++;
      await sleep(Number(boardResponse.headers.get('retry-after') ?? 1) * 1000);
      boardResponse = await fetch(boardUrl);
    }
    if (!boardResponse.ok) throw new Error(`${boardUrl} answered ${boardResponse.status}`);
    const cards = ((await boardResponse.json()) as unknown[]).length;
    const rows = [
      {
        what: `first GET /api/v1/builds?repo= until answered (503 ×${refused} before)`,
        ms: [Date.now() - first],
      },
      { what: 'GET /api/v1/status', ms: await timed(`${apiUrl}/api/v1/status`) },
      { what: 'GET /api/v1/repos', ms: await timed(`${apiUrl}/api/v1/repos`) },
      { what: `GET /api/v1/builds?repo= (${cards} builds)`, ms: await timed(boardUrl) },
    ];
    if (!existsSync('/usr/bin/chromium')) return rows;
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
    });
    try {
      const loads = async (url: string, drawn: (page: Page) => Promise<unknown>) => {
        const ms: number[] = [];
        for (let i = 0; i < 5; i++) {
          const page = await browser.newPage();
          const t = Date.now();
          await page.goto(url);
          await drawn(page);
          ms.push(Date.now() - t);
          await page.close();
        }
        return ms;
      };
      // Locators, not functions evaluated in the page: the UI's CSP forbids eval.
      const home = await loads(`${apiUrl}/`, (page) =>
        Promise.all(
          ['#repos', '#dashboard'].map((id) =>
            page.locator(`${id}[aria-busy="false"]`).waitFor({ timeout: 60_000 }),
          ),
        ),
      );
      const board = await loads(`${apiUrl}/builds?repo=${repo}`, (page) =>
        page
          .locator('article.card')
          .nth(cards - 1)
          .waitFor({ timeout: 60_000 }),
      );
      rows.push({ what: 'home page drawn in chromium', ms: home });
      rows.push({ what: `board page (${cards} builds) drawn in chromium`, ms: board });
    } finally {
      await browser.close();
    }
    return rows;
  }

  /** BENCH_SCENARIO=api: the API's latencies at 150 and at BUILDS open builds. */
  async function apiScenario(): Promise<void> {
    const board = repos[0];
    const repoOf = (i: number) => (i < BOARD_BUILDS ? board : repos[1 + (i % (REPOS - 1))]);
    const steps = [...new Set([Math.min(BOARD_BUILDS, BUILDS), BUILDS])];
    const measured: Array<{ open: number; rows: Array<{ what: string; ms: number[] }> }> = [];
    let filledUpTo = 0;
    for (const step of steps) {
      const { added, ms } = await fill(filledUpTo, step, repoOf);
      filledUpTo = step;
      const open = (await client.workflow.count(runningBuildsQuery('bench'))).count;
      console.log(
        `  ${open} open builds (${added} added in ${Math.round(ms / 1000)} s, load ${loadAverage()})`,
      );
      // The fill is a burst no deployment sees (hundreds of starts a minute), and each read of
      // the change feed lists the changes since a lookback before the previous read: the first
      // /repos after it pays for the fill, and so does the first one a lookback later; the
      // steady state, what the table shows, comes after both.
      const catchUp = async () => {
        const t = Date.now();
        await (await fetch(`${apiUrl}/api/v1/repos`)).arrayBuffer();
        return Date.now() - t;
      };
      const first = await catchUp();
      const idle0 = service.sample();
      await sleep(CHANGE_FEED_LOOKBACK_MS);
      const idle = growth(idle0, service.sample());
      console.log(`  /repos after the fill: ${first} ms, and a lookback later ${await catchUp()} ms`);
      console.log(
        `  idle CPU over ${CHANGE_FEED_LOOKBACK_MS / 1000} s, service: ` +
          `${fmt((sum(idle) / (CHANGE_FEED_LOOKBACK_MS / 1000)) * 100)}% of one core (` +
          Object.entries(idle)
            .map(([name, seconds]) => `${name} ${fmt(seconds)} s`)
            .join(', ') +
          ')',
      );
      const t = Date.now();
      measured.push({ open, rows: await apiLatencies(board) });
      console.log(`  timed in ${Math.round((Date.now() - t) / 1000)} s, load ${loadAverage()}`);
    }
    const [first, last] = [measured[0], measured[measured.length - 1]];
    console.log(
      `\nAPI latencies on the ${stackName} (p50 / p99 ms; ${API_REQUESTS} requests each, 5 page loads), ` +
        `${machine}, load average ${loadAverage()}\n`,
    );
    console.log(
      `| measure | ${measured.map((m) => `${m.open} builds`).join(' | ')} | p50 per 1,000 builds |\n` +
        `| --- | ${measured.map(() => '---').join(' | ')} | --- |`,
    );
    first.rows.forEach(({ what }, i) => {
      const cells = measured.map(
        ({ rows }) => `${percentile(rows[i].ms, 50)} / ${percentile(rows[i].ms, 99)}`,
      );
      const slope =
        ((percentile(last.rows[i].ms, 50) - percentile(first.rows[i].ms, 50)) / (last.open - first.open)) *
        1000;
      // The board's row names its own size, the same at every step.
      console.log(
        `| ${what} | ${cells.join(' | ')} | ${last.open > first.open ? slope.toFixed(1) : '—'} ms |`,
      );
    });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
