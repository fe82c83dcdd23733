import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
import type { CommitInfo } from '../common/types';
import { loadConfig } from '../common/config';
import type { evictionWorkflow } from '../workflows';
import { buildWorkflowId } from '../workflows/definitions';
import { startControlPlane } from './control-plane';
import { binary } from './paths';
import { startTemporalDevServer } from './temporal-dev';

// `npm run bench`: 200 builds against a real Temporal dev server and kube-apiserver, with a
// worker process; this script plays the Job and Deployment controllers and measures
// (start request → Deployment exists), (init Job succeeded → Deployment scaled to 1), the
// worker's peak RSS, and how long eviction takes to bring 200 deployed builds down to 50.

const BUILDS = Number(process.env.BENCH_BUILDS ?? 200);
const WEBHOOK_SECRET = 'bench-secret';
const MAX_DEPLOYED_AFTER = 50;

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-'));
  const [temporal, controlPlane] = await Promise.all([
    startTemporalDevServer(workDir),
    startControlPlane(path.join(workDir, 'kube')),
  ]);
  const env = {
    RUNBOAT_BUILD_NAMESPACE: 'bench',
    RUNBOAT_BUILD_DOMAIN: 'bench.test',
    RUNBOAT_TASK_QUEUE: 'bench',
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
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
  server.closeAllConnections();
  server.close();
  api.events.close();
  for (const w of watches) w.abort();
  worker.kill('SIGTERM');
  await new Promise((resolve) => worker.once('exit', resolve));
  await connection.close();
  await Promise.all([temporal.stop(), controlPlane.stop()]);
  rmSync(workDir, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
