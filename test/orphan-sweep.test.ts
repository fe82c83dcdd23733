import { expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import type { CommitInfo, OrphanSweep } from '../common/types';
import { ensureOrphanSweepSchedule } from '../worker/schedule';
import type { orphanSweepWorkflow } from '../workflows';
import { orphanSweepScheduleId } from '../workflows/definitions';
import { metricSample, scrapeMetrics, useStack } from './api-server';
import { SHA, terminateBuildWorkflow, testConfig, waitFor } from './helpers';

// A build whose workflow is gone without undeploying it (terminated from the Temporal UI)
// leaves its objects: the orphan sweep deletes them once they are older than the grace
// period, and never touches a build whose workflow runs.

const config = testConfig({ RUNBOAT_NO_CLEANUP_JOB: 'true' });
const stack = useStack(config);

const commit = (sha: string): CommitInfo => ({
  repo: 'oca/orphans',
  target_branch: '16.0',
  pr: null,
  git_commit: SHA(sha),
});

const sweep = (graceSeconds: number): Promise<OrphanSweep> =>
  stack.temporal.client.workflow.execute<typeof orphanSweepWorkflow>('orphanSweepWorkflow', {
    args: [{ graceSeconds }],
    taskQueue: config.taskQueue,
    workflowId: `orphan-sweep-${graceSeconds}-${config.taskQueue}`,
  });

it('deletes the objects of a build without a running workflow, after the grace period only', async () => {
  const { client } = stack.temporal;
  const living = await startBuild(client, config, commit('1'));
  const orphaned = await startBuild(client, config, commit('2'));
  for (const build of [living, orphaned])
    await waitFor('its Deployment', () => stack.cluster.deployment(build.name));
  await terminateBuildWorkflow(client, config, orphaned.name);
  // By uid, not by count: the builds' last activities may still add objects (an init Job) as
  // the test runs; what matters is which objects the sweeps remove.
  const uidsOf = async (name: string) =>
    new Set((await stack.cluster.builds.listBuildObjects(name)).map((object) => object.metadata?.uid));
  const stillThere = async (name: string, uids: Set<string | undefined>) => {
    const now = await uidsOf(name);
    return [...uids].filter((uid) => now.has(uid)).length;
  };
  const orphanObjects = await uidsOf(orphaned.name);
  expect(orphanObjects.size).toBeGreaterThan(0);

  // Younger than the grace period: left alone, whatever its workflow.
  expect(await sweep(3_600)).toEqual({ builds: [], objects: 0, adopted: [] });
  expect(await stillThere(orphaned.name, orphanObjects)).toBe(orphanObjects.size);

  const livingObjects = await uidsOf(living.name);
  const swept = await sweep(0);
  expect(swept.builds).toEqual([orphaned.name]);
  expect(swept.objects).toBeGreaterThanOrEqual(orphanObjects.size);
  expect(await stillThere(orphaned.name, orphanObjects)).toBe(0);
  expect(await stillThere(living.name, livingObjects)).toBe(livingObjects.size);
});

it('runs on a schedule, with the configured grace period', async () => {
  await ensureOrphanSweepSchedule(stack.temporal.client, config);
  const { action } = await stack.temporal.client.schedule.getHandle(orphanSweepScheduleId(config)).describe();
  expect(action).toMatchObject({ workflowType: 'orphanSweepWorkflow', args: [{ graceSeconds: 3_600 }] });
});

it('reports in /metrics what the last scheduled sweep deleted', async () => {
  const { client } = stack.temporal;
  const orphaned = await startBuild(client, config, commit('3'));
  await waitFor('its Deployment', () => stack.cluster.deployment(orphaned.name));
  await terminateBuildWorkflow(client, config, orphaned.name);

  await ensureOrphanSweepSchedule(client, { ...config, orphanGraceSeconds: 0 });
  const schedule = client.schedule.getHandle(orphanSweepScheduleId(config));
  await schedule.trigger();
  // 0 until a sweep of the schedule has finished.
  const swept = await waitFor('the sweep in /metrics', async () => {
    const value = metricSample(await scrapeMetrics(stack.api), 'runboat_orphan_objects_swept');
    return value !== 0 && value;
  });
  // What the scheduled run itself returned (the build's objects; more may have come from its
  // last activity, still running when the workflow was terminated).
  const [{ action }] = (await schedule.describe()).info.recentActions;
  const run = client.workflow.getHandle(action.workflow.workflowId, action.workflow.firstExecutionRunId);
  const result = (await run.result()) as OrphanSweep;
  expect(result.builds).toEqual([orphaned.name]);
  expect(Number(swept)).toBe(result.objects);
});
