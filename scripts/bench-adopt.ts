import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import type { OrphanSweep } from '../common/types';
import type { orphanSweepWorkflow } from '../workflows';
import { forEachAtOnce } from './at-once';
import { startControlPlane } from './control-plane';
import { binary } from './paths';
import { calibrationCpuMs, CpuMeter, cpuSeconds, growth } from './proc-cpu';
import { startServiceProcesses } from './service';
import { startTemporalDevServer } from './temporal-dev';

// `npm run bench:adopt`: moving OCA from runboat. BENCH_BUILDS (7000) builds deployed as
// runboat's kubefiles leave them (a Deployment with runboat's annotations and finalizer, its
// Service, PVC, ConfigMap, Secret and two Ingresses), 150 of them started and 20 failed, on the
// bare control plane; then the service as deployed (a worker process, an API process) on a
// Temporal dev server, and one orphan sweep, which adopts them all. Reports how long the sweep
// and the adopted workflows' first tasks take and cost, what the API then counts, and what the
// next sweep (nothing to adopt) costs.

const BUILDS = Number(process.env.BENCH_BUILDS ?? 7000);
const STARTED = Math.min(150, BUILDS);
const FAILED = Math.min(20, BUILDS - STARTED);
const CREATE_CONCURRENCY = 32;
/** The adopted builds' first tasks are done when the worker is this idle over IDLE_WINDOW_MS. */
const IDLE_CORES = 0.05;
const IDLE_WINDOW_MS = 3_000;

const runboatName = (i: number) => `b${i.toString(16).padStart(8, '0')}-0000-4000-8000-${'0'.repeat(12)}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const machine = `${os.cpus().length} cores (calibration ${calibrationCpuMs()} ms of CPU)`;
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-adopt-'));
  console.log(`bench adopt: logs in ${workDir}`);
  const [temporal, cluster] = await Promise.all([
    startTemporalDevServer(path.join(workDir, 'temporal')),
    startControlPlane(path.join(workDir, 'kube')),
  ]);
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  const [core, apps, networking] = [
    kc.makeApiClient(CoreV1Api),
    kc.makeApiClient(AppsV1Api),
    kc.makeApiClient(NetworkingV1Api),
  ];
  const namespace = 'bench';
  await core.createNamespace({ body: { metadata: { name: namespace } } });

  const began = performance.now();
  await forEachAtOnce(BUILDS, CREATE_CONCURRENCY, async (i) => {
    const name = runboatName(i);
    const labels = { 'runboat/build': name };
    const pr = i % 3 === 0 ? '' : String(1000 + i);
    const annotations = {
      'runboat/repo': `oca/repo-${i % 50}`,
      'runboat/target-branch': '16.0',
      'runboat/pr': pr,
      'runboat/git-commit': i.toString(16).padStart(40, '0'),
    };
    const metadata = (suffix: string) => ({ name: `${name}-${suffix}`, labels, annotations });
    const started = i < STARTED;
    const initStatus = i >= STARTED && i < STARTED + FAILED ? 'failed' : 'succeeded';
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: {
          ...metadata('odoo'),
          annotations: { ...annotations, 'runboat/init-status': initStatus },
          finalizers: ['runboat/cleanup'],
        },
        spec: {
          replicas: started ? 1 : 0,
          selector: { matchLabels: { ...labels, app: 'odoo' } },
          template: {
            metadata: { labels: { ...labels, app: 'odoo' } },
            spec: { containers: [{ name: 'odoo', image: 'odoo:16' }] },
          },
        },
      },
    });
    if (started) {
      const deployment = await apps.readNamespacedDeployment({ name: `${name}-odoo`, namespace });
      await apps.replaceNamespacedDeploymentStatus({
        name: `${name}-odoo`,
        namespace,
        body: { ...deployment, status: { replicas: 1, readyReplicas: 1, availableReplicas: 1 } },
      });
    }
    const selector = { ...labels, app: 'odoo' };
    await Promise.all([
      core.createNamespacedService({
        namespace,
        body: { metadata: metadata('odoo'), spec: { selector, ports: [{ port: 8069 }] } },
      }),
      core.createNamespacedPersistentVolumeClaim({
        namespace,
        body: {
          metadata: metadata('data'),
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        },
      }),
      core.createNamespacedConfigMap({
        namespace,
        body: { metadata: metadata('odooenv'), data: { PGDATABASE: name } },
      }),
      core.createNamespacedSecret({
        namespace,
        body: { metadata: metadata('odoosecretenv'), stringData: { PGPASSWORD: 'x' } },
      }),
      ...['odoo', 'mailhog'].map((suffix) =>
        networking.createNamespacedIngress({
          namespace,
          body: {
            metadata: metadata(suffix),
            spec: {
              rules: [
                {
                  host: `${name}.${suffix}.bench.test`,
                  http: {
                    paths: [
                      {
                        path: '/',
                        pathType: 'Prefix',
                        backend: { service: { name: `${name}-odoo`, port: { number: 8069 } } },
                      },
                    ],
                  },
                },
              ],
            },
          },
        }),
      ),
    ]);
  });
  const createdSeconds = (performance.now() - began) / 1000;

  const env: Record<string, string> = {
    RUNBOAT_BUILD_NAMESPACE: namespace,
    RUNBOAT_BUILD_DOMAIN: 'bench.test',
    RUNBOAT_TASK_QUEUE: 'bench',
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
    RUNBOAT_MAX_INITIALIZING: '20',
    RUNBOAT_MAX_STARTED: String(STARTED),
    RUNBOAT_MAX_DEPLOYED: String(BUILDS),
    RUNBOAT_EVICTION_INTERVAL: '3600',
    RUNBOAT_NO_CLEANUP_JOB: 'true',
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
    TEMPORAL_ADDRESS: temporal.address,
    KUBECONFIG: cluster.kubeconfigPath,
    LOG_LEVEL: 'warn',
  };
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection });
  const service = await startServiceProcesses({ logDir: workDir, env, connection });
  const pids = {
    worker: service.worker.pid as number,
    api: service.api.pid as number,
    temporal: temporal.pid,
    ...Object.fromEntries(cluster.daemons.map((daemon) => [daemon.name, daemon.process.pid as number])),
  };
  const meter = new CpuMeter(pids);
  const cpu = () => meter.sample();
  const spent = (from: Record<string, number>, to: Record<string, number>) =>
    Object.entries(growth(from, to))
      .map(([name, seconds]) => `${name} ${seconds.toFixed(1)}`)
      .join(', ');
  const serviceSeconds = (from: Record<string, number>, to: Record<string, number>) => {
    const grown = growth(from, to);
    return grown.worker + grown.api + grown.temporal;
  };
  const sweep = async () => {
    const before = cpu();
    const start = performance.now();
    const result = await client.workflow.execute<typeof orphanSweepWorkflow>('orphanSweepWorkflow', {
      args: [{ graceSeconds: 0 }],
      taskQueue: env.RUNBOAT_TASK_QUEUE,
      workflowId: `bench-adopt-sweep-${Date.now()}`,
    });
    return { result: result as OrphanSweep, start, ms: performance.now() - start, before, after: cpu() };
  };
  const untilWorkerIdle = async () => {
    for (;;) {
      const before = cpuSeconds(pids.worker);
      await sleep(IDLE_WINDOW_MS);
      if ((cpuSeconds(pids.worker) - before) / (IDLE_WINDOW_MS / 1000) < IDLE_CORES) return;
    }
  };
  try {
    const adoption = await sweep();
    await untilWorkerIdle();
    // The idle window itself is not the adoption's time.
    const settled = { ms: performance.now() - IDLE_WINDOW_MS - adoption.start, after: cpu() };
    const status = (await (await fetch(`${service.apiUrl}/api/v1/status`)).json()) as Record<string, number>;
    const again = await sweep();
    const adopted = adoption.result.adopted?.length ?? 0;
    console.log(`\n${BUILDS} runboat builds (${STARTED} started, ${FAILED} failed), ${machine}\n`);
    console.log('| measure | value |');
    console.log('| --- | --- |');
    console.log(`| runboat's objects created (7 a build) | ${createdSeconds.toFixed(0)} s |`);
    console.log(
      `| the adopting sweep: adopted; swept | ${adopted}; ${adoption.result.builds.length} builds |`,
    );
    console.log(`| the adopting sweep: wall | ${(adoption.ms / 1000).toFixed(1)} s |`);
    console.log(`| the adopting sweep: CPU s (all processes) | ${spent(adoption.before, adoption.after)} |`);
    console.log(
      `| sweep start → worker idle (every adopted build's first task done): wall; CPU s | ` +
        `${(settled.ms / 1000).toFixed(1)} s; ${spent(adoption.before, settled.after)} |`,
    );
    console.log(
      `| service CPU per adopted build (worker + API + Temporal) | ` +
        `${((serviceSeconds(adoption.before, settled.after) / Math.max(adopted, 1)) * 1000).toFixed(1)} ms |`,
    );
    console.log(
      `| /api/v1/status after | deployed ${status.deployed}, started ${status.started}, ` +
        `stopped ${status.stopped}, failed ${status.failed} |`,
    );
    console.log(
      `| the next sweep (nothing to adopt): wall; CPU s | ${(again.ms / 1000).toFixed(1)} s; ` +
        `${spent(again.before, again.after)} |`,
    );
  } finally {
    await service.stop();
    await connection.close();
    await Promise.all([temporal.stop(), cluster.stop()]);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
