import { afterEach, describe, expect, it, vi } from 'vitest';
import { getBuildState, startBuild } from '../api/build-client';
import { BuildIndex } from '../common/build-index';
import { listBuilds } from '../common/build-list';
import { ChangeFeed } from '../common/change-feed';
import type { BuildRef, BuildStatus, CommitInfo } from '../common/types';
import { ensureEvictionSchedule } from '../worker/schedule';
import type { evictionWorkflow } from '../workflows';
import { buildWorkflowId, evictionScheduleId } from '../workflows/definitions';
import { useStack } from './api-server';
import { replayAndRecord, replayAndRecordRuns, runHistories, SHA, testConfig, waitFor } from './helpers';

// Eight builds on two branches and a PR, all started; max_running=2, max_deployed=4.

const config = testConfig({
  RUNBOAT_MAX_INITIALIZING: '8',
  RUNBOAT_MAX_RUNNING: '2',
  RUNBOAT_MAX_DEPLOYED: '4',
  RUNBOAT_NO_CLEANUP_JOB: 'true',
  RUNBOAT_EVICTION_INTERVAL: '3600',
});
const stack = useStack(config);
const { cluster } = stack;

const commit = (branch: string, pr: number | null, sha: string): CommitInfo => ({
  repo: 'oca/sale-workflow',
  target_branch: branch,
  pr,
  git_commit: SHA(sha),
});

const runEviction = (workflowId = `eviction-${Date.now()}`) =>
  stack.temporal.client.workflow.execute<typeof evictionWorkflow>('evictionWorkflow', {
    workflowId,
    taskQueue: config.taskQueue,
    args: [{ maxStarted: config.maxStarted, maxDeployed: config.maxDeployed }],
  });

describe('eviction', () => {
  afterEach(() => vi.restoreAllMocks());

  it('stops the builds scaled longest ago, then undeploys stopped ones but the newest of each branch', async () => {
    // The worker's first run, within the limits, has the candidates' index list every build
    // (none yet), once and in the background; the first run over them then reads the builds
    // that changed since instead of listing them all, and decides as well.
    const warmUps = vi.spyOn(BuildIndex.prototype, 'warm');
    const feedReads = vi.spyOn(ChangeFeed.prototype, 'read');
    expect(await runEviction()).toEqual({ stop: [], undeploy: [] });
    expect(await runEviction()).toEqual({ stop: [], undeploy: [] });
    expect(warmUps).toHaveBeenCalledTimes(1);
    expect(feedReads).not.toHaveBeenCalled();

    // Created in this order: b3 is the newest build of 16.0, c3 of 17.0.
    const created: Record<string, CommitInfo> = {
      b1: commit('16.0', null, '1'),
      b2: commit('16.0', null, '2'),
      b3: commit('16.0', null, '3'),
      c1: commit('17.0', null, '4'),
      c2: commit('17.0', null, '5'),
      c3: commit('17.0', null, '6'),
      p1: commit('17.0', 7, '7'),
      p2: commit('17.0', 7, '8'),
    };
    const builds: Record<string, BuildRef> = {};
    for (const [key, c] of Object.entries(created))
      builds[key] = await startBuild(stack.temporal.client, config, c);
    const { workflow } = stack.temporal.client;
    const b1 = buildWorkflowId(builds.b1.name);
    const b1FirstRun = (await workflow.getHandle(b1).describe()).runId;
    const status = async (key: string) =>
      (await getBuildState(stack.temporal.client, builds[key].name)).status;
    const reach = (key: string, wanted: BuildStatus) =>
      waitFor(`${key} to be ${wanted}`, async () => (await status(key)) === wanted);

    // Started (scaled) in another order, oldest first: c3 is scaled longest ago.
    const scaledOrder = ['c3', 'b1', 'b2', 'p1', 'c1', 'b3', 'c2', 'p2'];
    for (const key of scaledOrder) {
      await cluster.finishJob(builds[key].name, 'initialize', true);
      await reach(key, 'started');
    }

    const firstRun = `eviction-${Date.now()}-first`;
    const first = await runEviction(firstRun);
    expect(feedReads).toHaveBeenCalled();
    const second = await runEviction();
    expect(first.stop.sort()).toEqual(['c3', 'b1', 'b2', 'p1', 'c1', 'b3'].map((k) => builds[k].name).sort());
    expect(first.undeploy.sort()).toEqual(['b1', 'b2', 'p1', 'c1'].map((k) => builds[k].name).sort());
    // Run again at once: the stops and undeploys asked for are seen, nothing more is evicted.
    expect(second).toEqual({ stop: [], undeploy: [] });

    for (const key of ['c2', 'p2']) expect(await status(key)).toBe('started');
    for (const key of ['c3', 'b3']) await reach(key, 'stopped');
    for (const key of ['b1', 'b2', 'p1', 'c1']) {
      await stack.temporal.client.workflow.getHandle(buildWorkflowId(builds[key].name)).result();
      expect(await cluster.builds.listBuildObjects(builds[key].name)).toEqual([]);
    }
    expect(await runEviction()).toEqual({ stop: [], undeploy: [] });

    // A build stopped and undeployed by an order, and the run that gave it: both replay, and are
    // a release's fixtures (replayAndRecord).
    await replayAndRecordRuns('build-evicted', await runHistories(workflow, b1, b1FirstRun));
    await replayAndRecord('eviction-run.json', await workflow.getHandle(firstRun).fetchHistory());

    // Later runs read the candidates from the worker's index, kept current from the change feed
    // since its first list: two new builds of 16.0 (initializing, so never
    // chosen) put 6 deployed over the 4, and make b3 no longer the newest of its branch.
    builds.b4 = await startBuild(stack.temporal.client, config, commit('16.0', null, '0'));
    builds.b5 = await startBuild(stack.temporal.client, config, commit('16.0', null, 'f'));
    await waitFor('the new builds listed', async () => {
      const listed = await listBuilds(stack.temporal.client, config, { branch: '16.0' });
      return (
        listed.filter((build) => ['b4', 'b5'].some((key) => builds[key].name === build.name)).length === 2
      );
    });
    expect(await runEviction()).toEqual({ stop: [], undeploy: [builds.b3.name] });
  });

  it('is run by a schedule that the worker creates idempotently, overlap SKIP', async () => {
    await ensureEvictionSchedule(stack.temporal.client, config);
    await ensureEvictionSchedule(stack.temporal.client, { ...config, evictionIntervalSeconds: 1800 });
    const handle = stack.temporal.client.schedule.getHandle(evictionScheduleId(config));
    try {
      const schedule = await handle.describe();
      expect(schedule.spec.intervals?.[0].every).toBe(1_800_000);
      expect(schedule.policies.overlap).toBe('SKIP');
      expect(schedule.action).toMatchObject({
        workflowType: 'evictionWorkflow',
        taskQueue: config.taskQueue,
      });
    } finally {
      await handle.delete();
    }
  });
});
