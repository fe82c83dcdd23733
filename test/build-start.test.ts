import { expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import { listBuilds } from '../common/build-list';
import { buildWorkflowId } from '../workflows/definitions';
import { SHA, testConfig, useTemporalClient, waitFor } from './helpers';

// A build is started with its search attributes: listable (and counted by eviction) before any
// worker has run its first workflow task. No worker polls this file's task queue.

const config = testConfig();
const temporal = useTemporalClient(config);

it('lists a build before its first workflow task', async () => {
  const commit = { repo: 'OCA/Sale-Workflow', target_branch: '16.0', pr: 42, git_commit: SHA('e') };
  const build = await startBuild(temporal.client, config, commit);
  try {
    const [listed] = await waitFor('the build to be listed', async () => {
      const builds = await listBuilds(temporal.client, config, { name: build.name });
      return builds.length ? builds : undefined;
    });
    expect(listed).toMatchObject({
      name: build.name,
      slug: build.slug,
      commit: { repo: 'oca/sale-workflow', target_branch: '16.0', pr: 42, git_commit: SHA('e') },
      status: 'initializing',
      init_status: 'todo',
      last_scaled: null,
    });
    // Still no workflow task has run: the attributes came with the start.
    const { events } = await temporal.client.workflow.getHandle(buildWorkflowId(build.name)).fetchHistory();
    expect(events?.some((e) => e.workflowTaskCompletedEventAttributes)).toBe(false);
    // A second start of the same build keeps the running workflow and its attributes.
    await startBuild(temporal.client, config, commit);
    expect(await listBuilds(temporal.client, config, { repo: 'oca/sale-workflow' })).toHaveLength(1);
  } finally {
    await temporal.client.workflow.getHandle(buildWorkflowId(build.name)).terminate('test over');
  }
});
