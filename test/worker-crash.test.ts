import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { getBuildState, startBuild } from '../api/build-client';
import { buildWorkflowId } from '../workflows/definitions';
import {
  SHA,
  spawnWorkerProcess,
  TestCluster,
  testConfig,
  testTemporal,
  waitFor,
  type TestTemporal,
} from './helpers';

// A worker process killed (SIGKILL) while its activity watches the init Job: another worker
// resumes the same attempt's watch and finishes the build, without re-running the init.

const config = testConfig();
const cluster = new TestCluster(config.buildNamespace);
let temporal: TestTemporal;
const workers: ChildProcess[] = [];
const spawnWorker = () => {
  const worker = spawnWorkerProcess(config);
  workers.push(worker);
  return worker;
};

beforeAll(async () => {
  await cluster.createNamespace();
  cluster.playDeploymentController();
  temporal = await testTemporal(config, cluster);
});

afterAll(async () => {
  cluster.stopControllers();
  for (const worker of workers) worker.kill('SIGKILL');
  await temporal?.close();
});

it('resumes waiting for the init job after the worker is killed', async () => {
  const first = spawnWorker();
  const build = await startBuild(temporal.client, config, {
    repo: 'oca/server-tools',
    target_branch: '17.0',
    pr: null,
    git_commit: SHA('d'),
  });
  await waitFor(
    'init-status started',
    async () =>
      (await cluster.deployment(build.name))?.metadata?.annotations?.['runboat/init-status'] === 'started',
    60_000,
  );
  const [initJob] = await cluster.jobs(build.name, 'initialize');
  // The watch activity has heartbeated its resourceVersion before the crash.
  const handle = temporal.client.workflow.getHandle(buildWorkflowId(build.name));
  await waitFor('the watch heartbeated', async () =>
    (await handle.describe()).raw.pendingActivities?.some(
      (activity) => (activity.heartbeatDetails?.payloads?.length ?? 0) > 0,
    ),
  );
  first.kill('SIGKILL');
  await new Promise((resolve) => first.once('exit', resolve));

  await cluster.finishJob(build.name, 'initialize', true);
  spawnWorker();
  await waitFor(
    'the build to start after the crash',
    async () => (await getBuildState(temporal.client, build.name)).status === 'started',
    90_000,
  );
  const jobs = await cluster.jobs(build.name, 'initialize');
  expect(jobs.map((job) => job.metadata?.uid)).toEqual([initJob.metadata?.uid]);
  expect((await cluster.deployment(build.name)).spec?.replicas).toBe(1);
}, 150_000);
