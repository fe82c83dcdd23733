import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, describe, expect, it } from 'vitest';
import { sendBuildCommand, startBuild } from '../api/build-client';
import { createActivities } from '../activities';
import type { BuildRef, BuildStatus } from '../common/types';
import type { EvictionLimits } from '../common/eviction';
import { releases } from '../worker/self-check';
import type { evictionWorkflow } from '../workflows';
import { buildWorkflowId } from '../workflows/definitions';
import { useStack } from './api-server';
import { bundleQuietly, replayOnTodaysCode, SHA, testConfig, waitFor, untilBuildStatus } from './helpers';

// Builds started by a released version's worker go on living under today's: stopped, started,
// initialized and undeployed by the new code (SPEC §9, README "Upgrading"). Each release's
// workflow code is taken from git at its commit, bundled, and run as that release's worker.

const ROOT = path.resolve(__dirname, '..');
const RELEASES = releases();

/** The workflow bundle of `commit`: its workflows/ and common/ folders, bundled as it shipped. */
async function releasedWorkflowBundle(commit: string): Promise<{ code: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `runboat-release-${commit.slice(0, 8)}-`));
  try {
    const archive = execFileSync('git', ['archive', commit, 'workflows', 'common'], { cwd: ROOT });
    execFileSync('tar', ['-x', '-C', dir], { input: archive });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    return await bundleQuietly(path.join(dir, 'workflows'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

it('knows at least one release', () => {
  expect(RELEASES.length).toBeGreaterThan(0);
});

describe.each(RELEASES)('builds started by release $version', ({ version, commit }) => {
  const config = testConfig({ RUNBOAT_NO_CLEANUP_JOB: 'true' });
  // The stack's own worker is today's; the released one runs first, on its own.
  const stack = useStack(config, { worker: false });
  const reach = (build: BuildRef, status: BuildStatus) =>
    untilBuildStatus(stack.temporal.client, build.name, status, 60_000);
  let connection: NativeConnection | undefined;
  const runEviction = (id: string, limits: EvictionLimits) =>
    stack.temporal.client.workflow.execute<typeof evictionWorkflow>('evictionWorkflow', {
      workflowId: `eviction-${id}`,
      taskQueue: config.taskQueue,
      args: [limits],
    });
  afterAll(async () => {
    await connection?.close();
  });

  it(`go on living under today's worker (${version} at ${commit.slice(0, 8)})`, async () => {
    connection = await NativeConnection.connect({ address: config.temporalAddress });
    const released = await Worker.create({
      connection,
      namespace: config.temporalNamespace,
      taskQueue: config.taskQueue,
      workflowBundle: await releasedWorkflowBundle(commit),
      activities: createActivities(config, stack.cluster.builds),
    });
    const commitOf = (sha: string) => ({
      repo: 'oca/upgrade',
      target_branch: '16.0',
      pr: null,
      git_commit: SHA(sha),
    });
    let stopped: BuildRef;
    let initializing: BuildRef;
    await released.runUntil(async () => {
      stopped = await startBuild(stack.temporal.client, config, commitOf('1'));
      await stack.cluster.finishJob(stopped.name, 'initialize', true);
      await reach(stopped, 'started');
      await sendBuildCommand(stack.temporal.client, stopped.name, 'stop');
      await reach(stopped, 'stopped');
      // One left mid-initialization, its init job running when the worker is replaced.
      initializing = await startBuild(stack.temporal.client, config, commitOf('2'));
      await waitFor(
        'its init job',
        async () => (await stack.cluster.jobs(initializing.name, 'initialize')).length,
      );
      // An eviction run of the release, which today's worker may have to replay.
      await runEviction(`released-${version}`, { maxStarted: 0, maxDeployed: 10 });
    });
    const history = await stack.temporal.client.workflow
      .getHandle(`eviction-released-${version}`)
      .fetchHistory();
    await replayOnTodaysCode(history, `eviction of ${version}`);

    await stack.temporal.startWorker();
    await stack.cluster.finishJob(initializing!.name, 'initialize', true);
    await reach(initializing!, 'started');
    await sendBuildCommand(stack.temporal.client, stopped!.name, 'start');
    await reach(stopped!, 'started');
    await sendBuildCommand(stack.temporal.client, stopped!.name, 'stop');
    await reach(stopped!, 'stopped');
    // Today's eviction tells the builds of the release: `stopped` goes (the other is the
    // newest of the branch, and started).
    expect(await runEviction(`today-${version}`, { maxStarted: 10, maxDeployed: 1 })).toEqual({
      stop: [],
      undeploy: [stopped!.name],
    });
    await sendBuildCommand(stack.temporal.client, initializing!.name, 'undeploy');
    for (const build of [stopped!, initializing!]) {
      await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
      expect(await stack.cluster.builds.listBuildObjects(build.name)).toEqual([]);
    }
  });
});
