import type { ChildProcess } from 'node:child_process';
import type { V1Job } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import { jobOutcome } from '../common/kubernetes';
import type { BuildRef } from '../common/types';
import {
  buildWorkflowId,
  initSlotsQuery,
  initSlotsWorkflowId,
  slotGrantedSignal,
} from '../workflows/definitions';
import {
  replayAndRecord,
  SHA,
  spawnWorkerProcess,
  TestCluster,
  testConfig,
  testTemporal,
  untilWorkersPoll,
  waitFor,
  type TestTemporal,
} from './helpers';

// max_initializing holds across worker processes: two workers, six builds, and the API server
// sampled all along for init Jobs that are running (neither succeeded nor failed).

const config = testConfig({ RUNBOAT_MAX_INITIALIZING: '2' });
const cluster = new TestCluster(config.buildNamespace);
let temporal: TestTemporal;
const workers: ChildProcess[] = [];

beforeAll(async () => {
  await cluster.createNamespace();
  cluster.playDeploymentController();
  temporal = await testTemporal(config, cluster);
  workers.push(spawnWorkerProcess(config), spawnWorkerProcess(config));
  await untilWorkersPoll(temporal.client, config, 2);
});

afterAll(async () => {
  cluster.stopControllers();
  for (const worker of workers) worker.kill('SIGTERM');
  await temporal?.close();
});

const commit = (n: number) => ({
  repo: 'oca/web',
  target_branch: '16.0',
  pr: 100 + n,
  git_commit: SHA(n.toString(16)),
});

async function runningInitJobs(): Promise<V1Job[]> {
  const { items } = await cluster.batch.listNamespacedJob({
    namespace: config.buildNamespace,
    labelSelector: 'runboat/job-kind=initialize',
  });
  return items.filter((job) => jobOutcome(job) === undefined);
}

const slots = () =>
  temporal.client.workflow.getHandle(initSlotsWorkflowId(config.taskQueue)).query(initSlotsQuery);

/**
 * The workflows the coordinator granted a slot to, in the order it granted them: its signals, as
 * its history records them. (Not when the builds received them: slots freed together are granted
 * in one workflow task, and those signals arrive in any order.)
 */
async function grantOrder(): Promise<string[]> {
  const { events } = await temporal.client.workflow
    .getHandle(initSlotsWorkflowId(config.taskQueue))
    .fetchHistory();
  return (events ?? []).flatMap(({ signalExternalWorkflowExecutionInitiatedEventAttributes: signal }) =>
    signal?.signalName === slotGrantedSignal.name ? [signal.workflowExecution?.workflowId ?? ''] : [],
  );
}

describe('init slots', () => {
  it('never runs more than max_initializing init jobs, and grants them in request order', async () => {
    // Sampled from the first request on: the first jobs start before the last build is queued.
    let peak = 0;
    const sampler = setInterval(() => {
      void runningInitJobs().then((jobs) => {
        peak = Math.max(peak, jobs.length);
      });
    }, 25);
    const builds: BuildRef[] = [];
    for (let n = 1; n <= 6; n++) {
      const build = await startBuild(temporal.client, config, commit(n));
      builds.push(build);
      // Queue them one after the other, so that the request order is known.
      await waitFor(`${build.name} to request a slot`, async () => {
        const { holders, waiting } = await slots();
        return [...holders, ...waiting].some((id) => id.endsWith(build.name));
      });
    }

    try {
      for (const build of builds) {
        await waitFor(`${build.name}'s init job`, async () =>
          (await runningInitJobs()).some((job) => job.metadata?.labels?.['runboat/build'] === build.name),
        );
        expect((await runningInitJobs()).length).toBeLessThanOrEqual(2);
        await cluster.finishJob(build.name, 'initialize', true);
      }
      await Promise.all(
        builds.map((b) =>
          waitFor(
            `${b.name} started`,
            async () => (await getBuildState(temporal.client, b.name)).status === 'started',
          ),
        ),
      );
    } finally {
      clearInterval(sampler);
    }
    expect(peak).toBe(2);
    // The order slots were granted, from the coordinator's history. (The order their Jobs appear
    // in can differ: two builds granted a moment apart race through rendering and applying.)
    expect(await grantOrder()).toEqual(builds.map((b) => buildWorkflowId(b.name)));
    expect(await slots()).toMatchObject({ holders: [], waiting: [] });
  });

  it('gives the slot back when a build is undeployed while waiting or while initializing', async () => {
    const [first, second, third] = [commit(7), commit(8), commit(9)].map((c) => ({ ...c, pr: c.pr + 100 }));
    const initializing = await startBuild(temporal.client, { ...config, noCleanupJob: true }, first);
    const alsoInitializing = await startBuild(temporal.client, { ...config, noCleanupJob: true }, second);
    await waitFor('two init jobs', async () => (await runningInitJobs()).length === 2);
    const waiting = await startBuild(temporal.client, { ...config, noCleanupJob: true }, third);
    await waitFor('the third build to wait', async () =>
      (await slots()).waiting.some((id) => id.endsWith(waiting.name)),
    );

    await sendBuildCommand(temporal.client, waiting.name, 'undeploy');
    await sendBuildCommand(temporal.client, initializing.name, 'undeploy');
    await temporal.client.workflow.getHandle(`build-${waiting.name}`).result();
    await temporal.client.workflow.getHandle(`build-${initializing.name}`).result();
    expect(await cluster.jobs(waiting.name, 'initialize')).toEqual([]);
    expect(await cluster.jobs(initializing.name, 'initialize')).toEqual([]);
    await waitFor('the slots to be given back', async () => {
      const { holders, waiting: queue } = await slots();
      return holders.length === 1 && holders[0].endsWith(alsoInitializing.name) && queue.length === 0;
    });
  });

  // The two tests above gave the coordinator requests in order, grants, releases, and requests
  // withdrawn by undeploys: its history is kept as a release's fixture (RUNBOAT_RECORD_HISTORIES),
  // which test/replay.test.ts replays against every later change of workflows/init-slots.ts.
  it("leaves a coordinator history that replays on today's code", async () => {
    const coordinator = temporal.client.workflow.getHandle(initSlotsWorkflowId(config.taskQueue));
    const history = await coordinator.fetchHistory();
    const signals = (history.events ?? []).filter((event) => event.workflowExecutionSignaledEventAttributes);
    expect(signals.length).toBeGreaterThan(10);
    await replayAndRecord('init-slots.json', history);
  });
});
