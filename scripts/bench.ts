import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
import type { AddressInfo } from 'node:net';
import { GitHub } from '../activities/github';
import { BuildCluster } from '../activities/kubernetes';
import { createApp } from '../api/app';
import { startBuild } from '../api/build-client';
import { webhookVerifier } from '../api/webhooks';
import { buildRef } from '../common/build';
import type { CommitInfo } from '../common/types';
import { loadConfig } from '../common/config';
import { buildSearchAttributes } from '../common/search-attributes';
import type { buildWorkflow, evictionWorkflow } from '../workflows';
import { buildWorkflowId } from '../workflows/definitions';
import { lifecycleSettings, listBuilds } from '../api/build-client';
import { startControlPlane } from './control-plane';
import { binary } from './paths';
import { startTemporalDevServer } from './temporal-dev';
import { startTemporalPostgres } from './temporal-postgres';

// `npm run bench`: 200 builds against a real Temporal dev server and kube-apiserver, with a
// worker process; this script plays the Job and Deployment controllers and measures
// (start request → Deployment exists), (init Job succeeded → Deployment scaled to 1), the
// worker's peak RSS, and how long eviction takes to bring 200 deployed builds down to 50.
// BENCH_TEMPORAL=postgres runs the same on the production shape (scripts/temporal-postgres.ts:
// the Temporal server on PostgreSQL) instead of the dev server. Both report the CPU the
// Temporal server (and PostgreSQL's processes) spent per build, and PostgreSQL's disk growth.
// BENCH_VISIBILITY_BUILDS=N then stops the worker, adds build workflows with their search
// attributes (as visibility lists them, not run) until N are open, and times the API's queries.

const BUILDS = Number(process.env.BENCH_BUILDS ?? 200);
const WEBHOOK_SECRET = 'bench-secret';
const MAX_DEPLOYED_AFTER = 50;
const ON_POSTGRES = process.env.BENCH_TEMPORAL === 'postgres';
const VISIBILITY_BUILDS = Number(process.env.BENCH_VISIBILITY_BUILDS ?? 0);
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** CPU seconds of `pid` and of its children, live (read from /proc) and reaped (cutime, cstime). */
function cpuSeconds(pid: number): number {
  const stat = (p: number | string) => {
    const text = readFileSync(`/proc/${p}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  };
  // Fields after the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
  const ticks = (fields: string[], from: number, to: number) =>
    fields.slice(from, to + 1).reduce((sum, v) => sum + Number(v), 0);
  let total = ticks(stat(pid), 11, 14);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === pid) continue;
    try {
      const fields = stat(entry);
      if (Number(fields[1]) === pid) total += ticks(fields, 11, 12);
    } catch {
      // Exited while listing.
    }
  }
  return total / CLOCK_TICKS;
}

const diskKiB = (dir: string) =>
  Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]);

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-'));
  const [temporal, controlPlane] = await Promise.all([
    ON_POSTGRES
      ? startTemporalPostgres(path.join(workDir, 'temporal'))
      : startTemporalDevServer(path.join(workDir, 'temporal')),
    startControlPlane(path.join(workDir, 'kube')),
  ]);
  /** The Temporal server's CPU seconds so far, PostgreSQL's processes included. */
  const serverCpu = () => {
    if (!('pids' in temporal)) return cpuSeconds(temporal.pid);
    const { temporal: server, postgres } = temporal.pids();
    return cpuSeconds(server) + cpuSeconds(postgres);
  };
  const pgDisk = () => ('pgDataDir' in temporal ? diskKiB(temporal.pgDataDir) : 0);
  const pgTableDisk = () => ('pgDataDir' in temporal ? diskKiB(path.join(temporal.pgDataDir, 'base')) : 0);
  const env = {
    RUNBOAT_BUILD_NAMESPACE: 'bench',
    RUNBOAT_BUILD_DOMAIN: 'bench.test',
    RUNBOAT_TASK_QUEUE: 'bench',
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUBECTL: binary('kubectl'),
    RUNBOAT_MAX_INITIALIZING: process.env.BENCH_MAX_INITIALIZING ?? '10',
    RUNBOAT_MAX_STARTED: '1000',
    RUNBOAT_MAX_DEPLOYED: '1000',
    RUNBOAT_EVICTION_INTERVAL: '3600',
    RUNBOAT_NO_CLEANUP_JOB: 'true',
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
    RUNBOAT_GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET,
    TEMPORAL_ADDRESS: temporal.address,
    KUBECONFIG: controlPlane.kubeconfigPath,
    LOG_LEVEL: 'warn',
  };
  const config = loadConfig(env);
  const kc = new KubeConfig();
  kc.loadFromFile(controlPlane.kubeconfigPath);
  const [core, apps, batch] = [
    kc.makeApiClient(CoreV1Api),
    kc.makeApiClient(AppsV1Api),
    kc.makeApiClient(BatchV1Api),
  ];
  await core.createNamespace({ body: { metadata: { name: 'bench' } } });

  const root = path.resolve(__dirname, '..');
  const worker = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'worker', 'main.ts')], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: 'ignore',
  });
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection });
  // Measure builds, not the worker's start-up: wait until it polls the task queue.
  for (;;) {
    const { pollers } = await connection.workflowService.describeTaskQueue({
      namespace: 'default',
      taskQueue: { name: 'bench' },
      taskQueueType: temporalProto.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    });
    if (pollers?.length) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  const requested = new Map<string, number>();
  const deployed = new Map<string, number>();
  const initSucceeded = new Map<string, number>();
  const scaledUp = new Map<string, number>();
  const watches: AbortController[] = [];
  const watch = new Watch(kc);
  const label = (o: { metadata?: { labels?: Record<string, string> } }) =>
    o.metadata?.labels?.['runboat/build'] ?? '';

  watches.push(
    await watch.watch(
      '/apis/apps/v1/namespaces/bench/deployments',
      {},
      (type, d: V1Deployment) => {
        const name = label(d);
        if (type === 'ADDED' && !deployed.has(name)) deployed.set(name, Date.now());
        if ((d.spec?.replicas ?? 0) === 1 && !scaledUp.has(name)) scaledUp.set(name, Date.now());
        const replicas = d.spec?.replicas ?? 0;
        if (type !== 'DELETED' && (d.status?.readyReplicas ?? 0) !== replicas) {
          void apps
            .replaceNamespacedDeploymentStatus({
              name: d.metadata!.name!,
              namespace: 'bench',
              body: { ...d, status: { replicas, readyReplicas: replicas, availableReplicas: replicas } },
            })
            .catch(() => undefined);
        }
      },
      () => undefined,
    ),
  );
  watches.push(
    await watch.watch(
      '/apis/batch/v1/namespaces/bench/jobs',
      {},
      (type, job: V1Job) => {
        if (type !== 'ADDED' || job.metadata?.labels?.['runboat/job-kind'] !== 'initialize') return;
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
          .then(() => initSucceeded.set(label(job), Date.now()));
      },
      () => undefined,
    ),
  );

  // BENCH_VIA=webhook: the builds come as signed pull_request webhooks through the API.
  const viaWebhooks = process.env.BENCH_VIA === 'webhook';
  const api = createApp({
    config,
    client,
    cluster: new BuildCluster(kc, 'bench'),
    github: new GitHub(config),
  });
  const server = api.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const verifier = await webhookVerifier(WEBHOOK_SECRET);
  const sendPullRequestWebhook = async (commit: CommitInfo): Promise<string> => {
    const body = JSON.stringify({
      action: 'opened',
      number: commit.pr,
      pull_request: { head: { sha: commit.git_commit }, base: { ref: commit.target_branch } },
      repository: { full_name: commit.repo },
    });
    const response = await fetch(`${apiUrl}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'pull_request',
        'x-hub-signature-256': await verifier.sign(body),
      },
      body,
    });
    const { builds } = (await response.json()) as { builds: string[] };
    return builds[0];
  };

  const cpuBefore = serverCpu();
  const workerCpuBefore = cpuSeconds(worker.pid as number);
  const [diskBefore, tableDiskBefore] = [pgDisk(), pgTableDisk()];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: BUILDS }, async (_, i) => {
      const commit = {
        repo: 'oca/bench',
        target_branch: '16.0',
        pr: i + 1,
        git_commit: (i + 1).toString(16).padStart(40, '0'),
      };
      const t = Date.now();
      const name = viaWebhooks
        ? await sendPullRequestWebhook(commit)
        : (await startBuild(client, config, commit)).name;
      requested.set(name, t);
    }),
  );
  while (scaledUp.size < BUILDS) await new Promise((resolve) => setTimeout(resolve, 200));
  const allStartedMs = Date.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 2_000));

  const evictionStarted = Date.now();
  const plan = await client.workflow.execute<typeof evictionWorkflow>('evictionWorkflow', {
    workflowId: 'bench-eviction',
    taskQueue: 'bench',
    args: [{ maxStarted: 6, maxDeployed: MAX_DEPLOYED_AFTER }],
  });
  for (;;) {
    const { items } = await apps.listNamespacedDeployment({ namespace: 'bench' });
    if (items.length <= MAX_DEPLOYED_AFTER) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const evictionMs = Date.now() - evictionStarted;
  // Let the undeployed builds' workflows complete before measuring what they cost.
  for (;;) {
    const open = await client.workflow.count(
      `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'`,
    );
    if (open.count <= MAX_DEPLOYED_AFTER) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const cpuPerBuild = (serverCpu() - cpuBefore) / BUILDS;
  const workerCpuPerBuild = (cpuSeconds(worker.pid as number) - workerCpuBefore) / BUILDS;
  const [diskAfter, tableDiskAfter] = [pgDisk(), pgTableDisk()];
  const peakRssKiB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${worker.pid}/status`, 'utf8'))?.[1]);

  const deployLatency = [...requested].map(([name, t]) => (deployed.get(name) as number) - t);
  const scaleLatency = [...initSucceeded].map(([name, t]) => (scaledUp.get(name) as number) - t);
  const row = (what: string, values: number[], target: string) =>
    `| ${what} | ${percentile(values, 50)} | ${percentile(values, 95)} | ${percentile(values, 99)} | ${target} |`;
  console.log(
    `\n${BUILDS} builds (${viaWebhooks ? 'signed webhooks through the API' : 'started by the Temporal client'}), ` +
      `max_initializing ${config.maxInitializing}, ${os.cpus().length} cores\n`,
  );
  console.log('| measure (ms) | p50 | p95 | p99 | target p50 |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(
    row(`${viaWebhooks ? 'webhook' : 'start request'} → Deployment exists`, deployLatency, '≤ 150'),
  );
  console.log(row('init Job succeeded → Deployment scaled to 1', scaleLatency, '≤ 300'));
  console.log(`\n| other | value |\n| --- | --- |`);
  console.log(`| all ${BUILDS} builds started | ${allStartedMs} ms |`);
  console.log(
    `| eviction ${BUILDS} → ${MAX_DEPLOYED_AFTER} deployed (stops ${plan.stop.length}, undeploys ${plan.undeploy.length}) | ${evictionMs} ms |`,
  );
  console.log(`| worker peak RSS | ${Math.round(peakRssKiB / 1024)} MiB |`);
  console.log(
    `| Temporal ${ON_POSTGRES ? 'server + PostgreSQL' : 'dev server'} CPU per build (create → started → evicted) | ${Math.round(cpuPerBuild * 1000)} ms |`,
  );
  console.log(`| worker CPU per build (kustomize included) | ${Math.round(workerCpuPerBuild * 1000)} ms |`);
  if (ON_POSTGRES) {
    const perThousand = (kib: number) => `${Math.round(((kib / BUILDS) * 1000) / 1024)} MiB`;
    console.log(
      `| PostgreSQL disk: data folder ${Math.round(diskBefore / 1024)} → ${Math.round(diskAfter / 1024)} MiB, tables ${Math.round(tableDiskBefore / 1024)} → ${Math.round(tableDiskAfter / 1024)} MiB | per 1,000 builds: ${perThousand(diskAfter - diskBefore)} (tables ${perThousand(tableDiskAfter - tableDiskBefore)}) |`,
    );
  }

  if (process.env.BENCH_HISTORY) {
    const [name] = requested.keys();
    const { events } = await client.workflow.getHandle(buildWorkflowId(name)).fetchHistory();
    const t0 = Number(events?.[0].eventTime?.seconds) * 1000 + Number(events?.[0].eventTime?.nanos) / 1e6;
    for (const event of events ?? []) {
      const t = Number(event.eventTime?.seconds) * 1000 + Number(event.eventTime?.nanos) / 1e6;
      const activity = event.activityTaskScheduledEventAttributes?.activityType?.name ?? '';
      console.log(
        `${(t - t0).toFixed(0).padStart(6)} ms  ${temporalProto.api.enums.v1.EventType[event.eventType ?? 0]} ${activity}`,
      );
    }
  }
  for (const w of watches) w.abort();
  worker.kill('SIGTERM');
  await new Promise((resolve) => worker.once('exit', resolve));
  if (VISIBILITY_BUILDS > 0) await visibilityAtScale(client, config);
  server.closeAllConnections();
  server.close();
  api.events.close();
  await connection.close();
  await Promise.all([temporal.stop(), controlPlane.stop()]);
  rmSync(workDir, { recursive: true, force: true });
}

/**
 * Adds build workflows until VISIBILITY_BUILDS are open (no worker runs them: each is a
 * visibility row with a stopped build's search attributes, over 100 repos), then times the
 * queries the API makes: /status lists every build, a repo's board lists ~1 %, a build one.
 */
async function visibilityAtScale(client: Client, config: ReturnType<typeof loadConfig>): Promise<void> {
  const open = async () =>
    (await client.workflow.count(`WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running'`)).count;
  const missing = VISIBILITY_BUILDS - (await open());
  const created = Date.now();
  let next = 0;
  const startOne = async (i: number) => {
    const build = buildRef({
      repo: `oca/repo-${i % 100}`,
      target_branch: '16.0',
      pr: 10_000 + i,
      git_commit: (0x100000 + i).toString(16).padStart(40, '0'),
    });
    const now = new Date().toISOString();
    await client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
      workflowId: buildWorkflowId(build.name),
      taskQueue: config.taskQueue,
      args: [{ build, settings: lifecycleSettings(config) }],
      typedSearchAttributes: buildSearchAttributes({
        ...build,
        status: 'stopped',
        init_status: 'succeeded',
        created: now,
        last_scaled: now,
        last_error: null,
      }),
    });
  };
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < missing) await startOne(next++);
    }),
  );
  const createMs = Date.now() - created;
  while ((await open()) < VISIBILITY_BUILDS) await new Promise((resolve) => setTimeout(resolve, 500));
  const time = async (what: string, query: () => Promise<unknown>) => {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      await query();
      samples.push(Date.now() - t);
    }
    return `| ${what} | ${percentile(samples, 50)} ms | ${Math.max(...samples)} ms |`;
  };
  console.log(
    `\nvisibility with ${VISIBILITY_BUILDS} open build workflows (${missing} added in ${createMs} ms)\n`,
  );
  console.log('| query | median of 5 | max |\n| --- | --- | --- |');
  console.log(
    await time('count of stopped builds', () => client.workflow.count(`RunboatStatus = 'stopped'`)),
  );
  console.log(await time(`list every build (/api/v1/status)`, () => listBuilds(client, config)));
  console.log(
    await time(`list a repo's builds (a board, ${VISIBILITY_BUILDS / 100})`, () =>
      listBuilds(client, config, { repo: 'oca/repo-7' }),
    ),
  );
  console.log(await time('list one PR', () => listBuilds(client, config, { pr: 10_007 })));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
