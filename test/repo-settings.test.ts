import { NativeConnection } from '@temporalio/worker';
import { afterAll, expect, it } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import type { BuildRef, BuildStatus } from '../common/types';
import { createWorker } from '../worker/worker';
import { buildWorkflowId } from '../workflows/definitions';
import { useStack } from './api-server';
import { SHA, testConfig, waitFor } from './helpers';

// A build keeps the RUNBOAT_REPOS entry it was created with for life: the worker that runs it
// no longer knows its repo (dropped from the configuration), yet it initializes, stops,
// starts and undeploys it as created, with the same image.

const config = testConfig({
  RUNBOAT_NO_CLEANUP_JOB: 'true',
  RUNBOAT_REPOS: JSON.stringify([
    { repo: '^oca/', branch: '^16.0$', builds: [{ image: 'ghcr.io/oca/created-with:16.0' }] },
  ]),
});
/** The worker's configuration, changed since the build was created: its repo is gone. */
const changed = { ...config, repos: [] };
const stack = useStack(config, { worker: false });
let connection: NativeConnection | undefined;

afterAll(async () => {
  await connection?.close();
});

it('lives and dies with the repo settings it was created with, after its repo left RUNBOAT_REPOS', async () => {
  connection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await createWorker(changed, connection, stack.cluster.builds);
  const reach = (build: BuildRef, status: BuildStatus) =>
    waitFor(`${build.name} ${status}`, async () => {
      const state = await getBuildState(stack.temporal.client, build.name);
      expect(state.last_error).toBeNull();
      return state.status === status;
    });
  await worker.runUntil(async () => {
    const build = await startBuild(stack.temporal.client, config, {
      repo: 'oca/dropped',
      target_branch: '16.0',
      pr: null,
      git_commit: SHA('d'),
    });
    await stack.cluster.finishJob(build.name, 'initialize', true);
    await reach(build, 'started');
    const image = (await stack.cluster.deployment(build.name)).spec?.template.spec?.containers[0].image;
    expect(image).toBe('ghcr.io/oca/created-with:16.0');
    await sendBuildCommand(stack.temporal.client, build.name, 'stop');
    await reach(build, 'stopped');
    await sendBuildCommand(stack.temporal.client, build.name, 'start');
    await reach(build, 'started');
    await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
    expect(await stack.cluster.builds.listBuildObjects(build.name)).toEqual([]);
  });
});
