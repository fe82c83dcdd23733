import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { startControlPlane } from './control-plane';
import {
  buildWorkflowIds,
  fuzzedGitHubApp,
  hostileRequests,
  outcomeTable,
  sendAll,
  streamBurst,
  violations,
  type FuzzTarget,
  type HostileRequest,
  type Outcome,
  type RouteSpec,
} from './fuzz-cases';
import { binary } from './paths';
import { startServiceProcesses } from './service';
import { startTemporalDevServer } from './temporal-dev';

// `npm run fuzz`: FUZZ_REQUESTS (10,000) hostile requests, FUZZ_CONCURRENCY (16) at a time, over
// every route of the real service (an API process and a worker process, on a Temporal dev
// server and a bare Kubernetes control plane), deterministic for FUZZ_SEED, with FUZZ_STREAMS
// (300) build-events streams opened together half-way and dropped. Then checks: no 5xx but the
// documented 503, no timeout, the API still up, no build that the run's few valid signed
// webhooks did not start, and the API's RSS (after a full GC, once stable) within 10% of what
// it was before. Prints a table per route; exits 1 on any violation.

const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 16);
const SEED = Number(process.env.FUZZ_SEED ?? 1);
const STREAMS = Number(process.env.FUZZ_STREAMS ?? 300);
const RSS_TOLERANCE = 0.1;
const TASK_QUEUE = 'fuzz';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

/**
 * The API's RSS once it holds still: a full GC every second (SIGUSR2, see gc-on-signal.ts)
 * until three readings in a row are within 1% of each other, for at most `maxMs`.
 */
async function settledRss(pid: number, maxMs = 60_000): Promise<number> {
  const readings: number[] = [];
  const deadline = Date.now() + maxMs;
  for (;;) {
    process.kill(pid, 'SIGUSR2');
    await sleep(1_000);
    readings.push(rssMiB(pid));
    const last = readings.slice(-3);
    const stable = last.length === 3 && Math.max(...last) - Math.min(...last) <= 0.01 * Math.min(...last);
    if (stable || Date.now() > deadline) return Math.min(...last);
  }
}

function* take<T>(iterator: Iterator<T>, count: number): Generator<T> {
  for (let i = 0; i < count; i++) {
    const next = iterator.next();
    if (next.done) return;
    yield next.value;
  }
}

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-fuzz-'));
  console.log(`fuzz: ${REQUESTS} requests, concurrency ${CONCURRENCY}, seed ${SEED}; logs in ${workDir}`);
  const [temporal, cluster] = await Promise.all([
    startTemporalDevServer(path.join(workDir, 'temporal')),
    startControlPlane(path.join(workDir, 'kube')),
  ]);
  const target: Omit<FuzzTarget, 'routes'> = {
    webhookSecret: 'fuzz-secret',
    adminUser: 'admin',
    adminPassword: 'fuzz-admin',
    repo: 'oca/fuzz',
    branch: '16.0',
    buildDomain: 'fuzz.test',
  };
  const env: Record<string, string> = {
    RUNBOAT_BUILD_NAMESPACE: 'fuzz',
    RUNBOAT_BUILD_DOMAIN: target.buildDomain,
    RUNBOAT_TASK_QUEUE: TASK_QUEUE,
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '^16\\.0$', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
    RUNBOAT_API_ADMIN_USER: target.adminUser,
    RUNBOAT_API_ADMIN_PASSWD: target.adminPassword,
    RUNBOAT_GITHUB_WEBHOOK_SECRET: target.webhookSecret,
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
    ...fuzzedGitHubApp(),
    // Triggers ask GitHub for a head: nowhere, on loopback (GitHub failing is the documented 503).
    RUNBOAT_GITHUB_API_URL: 'http://127.0.0.1:9',
    TEMPORAL_ADDRESS: temporal.address,
    KUBECONFIG: cluster.kubeconfigPath,
    LOG_LEVEL: 'warn',
  };
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'fuzz' } } });
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection });
  const service = await startServiceProcesses({
    logDir: workDir,
    env,
    connection,
    apiNodeArgs: ['--expose-gc', '--import', pathToFileURL(path.join(__dirname, 'gc-on-signal.ts')).href],
  });
  const apiPid = service.api.pid as number;
  let failed = true;
  try {
    // Every /api/v1 route, from the document the app serves (a test holds it to the routes).
    const document = (await (await fetch(`${service.apiUrl}/api/v1/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const routes: RouteSpec[] = Object.entries(document.paths).flatMap(([route, methods]) =>
      Object.keys(methods).map((method) => ({ method, path: `/api/v1${route}` })),
    );
    const before = await buildWorkflowIds(client, TASK_QUEUE);
    // A short warm-up (its own seed) loads what the first requests load, then the baseline.
    await sendAll(service.apiUrl, hostileRequests(SEED + 1_000_000, 300, { ...target, routes }), CONCURRENCY);
    const rssBefore = await settledRss(apiPid);

    const requests = hostileRequests(SEED, REQUESTS, { ...target, routes });
    const started = Date.now();
    const outcomes: Outcome[] = await sendAll(service.apiUrl, take(requests, REQUESTS / 2), CONCURRENCY);
    const [rest, burst] = await Promise.all([
      sendAll(service.apiUrl, { [Symbol.iterator]: () => requests } as Iterable<HostileRequest>, CONCURRENCY),
      streamBurst(service.apiUrl, STREAMS),
    ]);
    outcomes.push(...rest, ...burst);
    const seconds = (Date.now() - started) / 1000;

    const alive = service.api.exitCode === null && (await fetch(`${service.apiUrl}/healthz`)).ok;
    const rssAfter = await settledRss(apiPid);
    const after = await buildWorkflowIds(client, TASK_QUEUE);
    const newBuilds = [...after].filter((id) => !before.has(id)).map((id) => id.replace(/^build-/, ''));
    const found = violations(outcomes, newBuilds);
    const growth = (rssAfter - rssBefore) / rssBefore;
    const started_ = outcomes.filter((o) => o.builds?.length).length;

    console.log(`\n${outcomeTable(outcomes)}\n`);
    console.log(`| measure | value |\n| --- | ---: |`);
    console.log(`| requests sent (incl. ${STREAMS} concurrent streams) | ${outcomes.length} |`);
    console.log(`| wall time | ${seconds.toFixed(1)} s (${(outcomes.length / seconds).toFixed(0)} req/s) |`);
    console.log(`| 5xx other than 503, timeouts, resets | ${found.failures.length} |`);
    console.log(`| valid signed webhooks that started a build | ${started_} |`);
    console.log(`| builds after the run not started by a valid webhook | ${found.unexpectedBuilds.length} |`);
    console.log(`| API alive after the run | ${alive ? 'yes' : 'NO'} |`);
    console.log(
      `| API RSS before → after (settled, after GC) | ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB (${(growth * 100).toFixed(1)}%) |`,
    );
    for (const failure of found.failures.slice(0, 20)) {
      console.log(
        `FAILURE ${failure.status} ${failure.request.method} ${failure.request.path.slice(0, 120)} (${failure.request.kind}): ${failure.excerpt ?? ''}`,
      );
    }
    for (const name of found.unexpectedBuilds) console.log(`UNEXPECTED BUILD ${name}`);
    failed =
      found.failures.length > 0 || found.unexpectedBuilds.length > 0 || !alive || growth > RSS_TOLERANCE;
    console.log(failed ? '\nfuzz: invariants VIOLATED' : '\nfuzz: all invariants hold');
  } finally {
    await service.stop();
    await connection.close();
    await Promise.all([temporal.stop(), cluster.stop()]);
    if (!process.env.FUZZ_KEEP && !failed) rmSync(workDir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
