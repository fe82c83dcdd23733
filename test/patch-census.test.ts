import { expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import { runsStartedBefore } from '../scripts/patch-census';
import { buildWorkflowId, initSlotsWorkflowId, type InitSlotsWorkflow } from '../workflows/definitions';
import { SHA, testConfig, terminateWorkflowsAfterAll, useTemporalClient, waitFor } from './helpers';

// The census that says when a release's patches may go (README, Upgrading): open runs started
// before a rollout time. No worker polls this task queue: the runs stay open as started.

const config = testConfig();
const temporal = useTemporalClient(config);

terminateWorkflowsAfterAll(temporal, config);

it('counts the open runs started before a rollout, and the coordinator among them', async () => {
  const { client } = temporal;
  const before = new Date();
  await expect(runsStartedBefore(client, config.taskQueue, before)).resolves.toEqual({
    builds: 0,
    coordinator: false,
    oldest: undefined,
  });
  const build = await startBuild(client, config, {
    repo: 'oca/census',
    target_branch: '16.0',
    pr: null,
    git_commit: SHA('c'),
  });
  await client.workflow.start<InitSlotsWorkflow>('initSlotsWorkflow', {
    args: [{ capacity: 1, holders: [], waiting: [] }],
    taskQueue: config.taskQueue,
    workflowId: initSlotsWorkflowId(config.taskQueue),
  });
  const started = (await client.workflow.getHandle(buildWorkflowId(build.name)).describe()).startTime;

  const later = new Date(Date.now() + 60_000);
  const census = await waitFor('the build visible', async () => {
    const result = await runsStartedBefore(client, config.taskQueue, later);
    return result.builds === 1 && result;
  });
  expect(census).toEqual({ builds: 1, coordinator: true, oldest: started });
  // Runs started after the rollout are on its code: nothing to wait for.
  await expect(runsStartedBefore(client, config.taskQueue, before)).resolves.toMatchObject({
    builds: 0,
    coordinator: false,
  });
});
