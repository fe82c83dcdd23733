import type { ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { V1Job } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Config } from '../common/config';
import {
  chaosCommit,
  InitJobObserver,
  LIFE_STAGES,
  orphanObjects,
  ServiceDriver,
  workflowRunning,
  type Life,
} from '../scripts/chaos-checks';
import { freePort } from '../scripts/processes';
import { startTemporalDevServer, type TemporalDevServer } from '../scripts/temporal-dev';
import { spawnServiceProcess, spawnWorkerProcess, TestCluster, testConfig, waitFor } from './helpers';

// The fast version of `npm run chaos` (scripts/chaos.ts), with the same driver and checks:
// builds through full lives (signed webhook, started, stop, start, undeploy, all through an
// API process) with max_initializing 2, while the worker process is SIGKILLed twice and this
// file's own Temporal server (its database on a file) restarts once. The test control plane
// has no controllers: the test plays them, and holds Jobs back so that each kill lands at a
// chosen moment (init Jobs running, a cleanup Job running), not at a time that may or may not
// catch something. kube-apiserver restarts are left to `npm run chaos`: the test control plane
// is shared by every test file.

const BUILDS = 12;
const MAX_INITIALIZING = 2;
const WEBHOOK_SECRET = 'chaos-test-secret';
const ADMIN = { user: 'admin', password: 'chaos-test' };

const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-chaos-test-'));
const temporalDir = path.join(workDir, 'temporal');
let temporalOptions: { port: number; dbFile: string };
let temporal: TemporalDevServer | undefined;
let config: Config;
let cluster: TestCluster;
let observer: InitJobObserver;
let driver: ServiceDriver;
const children: ChildProcess[] = [];

const jobKind = (job: V1Job) => job.metadata?.labels?.['runboat/job-kind'];

beforeAll(async () => {
  temporalOptions = { port: await freePort(), dbFile: path.join(temporalDir, 'temporal.db') };
  temporal = await startTemporalDevServer(temporalDir, temporalOptions);
  config = testConfig({
    TEMPORAL_ADDRESS: temporal.address,
    RUNBOAT_MAX_INITIALIZING: String(MAX_INITIALIZING),
  });
  cluster = new TestCluster(config.buildNamespace);
  await cluster.createNamespace();
  cluster.playDeploymentController();
  observer = new InitJobObserver(cluster.kc, config.buildNamespace, 50);
  await observer.start();
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  cluster?.stopControllers();
  driver?.stop();
  await observer?.stop();
  await temporal?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

it('runs every build through its life while workers die and Temporal restarts', async () => {
  const held = { initialize: true, cleanup: true };
  cluster.playJobController((job) => !held[jobKind(job) as keyof typeof held]);
  const spawnWorker = () => {
    // No eviction: every stop and undeploy is the driver's.
    const worker = spawnWorkerProcess(config, {
      RUNBOAT_EVICTION_INTERVAL: '86400',
      RUNBOAT_MAX_STARTED: '100',
      RUNBOAT_MAX_DEPLOYED: '100',
    });
    children.push(worker);
    return worker;
  };
  const killWorker = async (worker: ChildProcess) => {
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.kill('SIGKILL');
    await exited;
  };
  const apiPort = await freePort();
  children.push(
    spawnServiceProcess(path.join('api', 'main.ts'), config, {
      PORT: String(apiPort),
      RUNBOAT_GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET,
      RUNBOAT_API_ADMIN_USER: ADMIN.user,
      RUNBOAT_API_ADMIN_PASSWD: ADMIN.password,
    }),
  );
  let worker = spawnWorker();
  driver = new ServiceDriver(`http://127.0.0.1:${apiPort}`, {
    webhookSecret: WEBHOOK_SECRET,
    admin: ADMIN,
    pollMs: 250,
  });
  driver.start();

  const lives: Life[] = Array.from({ length: BUILDS }, (_, index) => ({ index, stage: 'webhook' }));
  const abort = new AbortController();
  setMaxListeners(BUILDS + 10, abort.signal);
  const failures: string[] = [];
  const allLives = Promise.all(
    lives.map((life) =>
      driver.life(life, chaosCommit(life.index), abort.signal).catch((error: unknown) => {
        if (!abort.signal.aborted) failures.push(`${life.name ?? life.index}: ${String(error)}`);
      }),
    ),
  );
  const reached = (stage: Life['stage']) =>
    lives.filter((life) => LIFE_STAGES.indexOf(life.stage) >= LIFE_STAGES.indexOf(stage)).length;

  try {
    // 1. Killed while max_initializing init Jobs run: the next worker resumes their watches.
    await waitFor(
      'max_initializing init Jobs running',
      async () => observer.active() === MAX_INITIALIZING,
      240_000,
    );
    await killWorker(worker);
    worker = spawnWorker();
    held.initialize = false;

    // 2. Temporal restarts with builds at every stage of their lives.
    await waitFor('a third of the builds started', async () => reached('started') >= BUILDS / 3, 240_000);
    await temporal!.stop();
    temporal = await startTemporalDevServer(temporalDir, temporalOptions);

    // 3. Killed while a cleanup Job holds an undeploy.
    await waitFor(
      'a cleanup Job',
      async () =>
        (await cluster.batch.listNamespacedJob({ namespace: config.buildNamespace })).items.some(
          (job) => jobKind(job) === 'cleanup',
        ),
      240_000,
    );
    await killWorker(worker);
    worker = spawnWorker();
    held.cleanup = false;

    await waitFor('every life done', async () => failures.length > 0 || reached('done') === BUILDS, 300_000);
  } catch (error) {
    const stages = LIFE_STAGES.map((stage) => `${stage} ${lives.filter((l) => l.stage === stage).length}`);
    throw new Error(`${(error as Error).message}; lives: ${stages.join(', ')}`);
  } finally {
    abort.abort();
    await allLives;
  }

  expect(failures).toEqual([]);
  expect(observer.doubleInits()).toEqual([]);
  // Reached (step 1 waited for it), never exceeded.
  expect(observer.peak).toBe(MAX_INITIALIZING);
  const connection = await Connection.connect({ address: config.temporalAddress });
  try {
    const client = new Client({ connection, namespace: config.temporalNamespace });
    expect(Object.fromEntries(await orphanObjects(cluster.kc, config.buildNamespace, client))).toEqual({});
    const running = [];
    for (const life of lives) if (await workflowRunning(client, life.name!)) running.push(life.name);
    expect(running).toEqual([]);
  } finally {
    await connection.close();
  }
}, 1_200_000);
