import { expect, it } from 'vitest';
import { listBuilds } from '../api/build-client';
import { buildRef } from '../common/build';
import { buildSearchAttributes, listBuildRows, runningBuildsQuery } from '../common/search-attributes';
import type { BuildState, BuildStatus } from '../common/types';
import type { buildWorkflow } from '../workflows/build';
import { buildWorkflowId } from '../workflows/definitions';
import { SHA, testConfig, terminateWorkflowsAfterAll, useTemporalClient, waitFor } from './helpers';

// A build continuing as new (at rest, or with a full history) has two running rows in
// visibility until the old run's close is recorded. Every list of builds (eviction's candidates,
// the API's index and boards, the per-ref cap) must count it once, as its newer run. Here two
// real workflows carry one build's search attributes, as the two runs do; no worker polls their
// task queue, so they stay as started.

const config = testConfig();
const temporal = useTemporalClient(config);

terminateWorkflowsAfterAll(temporal, config);

it('lists a build with two running rows once, as its newer run has it', async () => {
  const { client } = temporal;
  const build = buildRef({ repo: 'oca/rows', target_branch: '16.0', pr: 7, git_commit: SHA('d') });
  const other = buildRef({ repo: 'oca/rows', target_branch: '16.0', pr: 8, git_commit: SHA('e') });
  const start = (workflowId: string, ref: typeof build, status: BuildStatus) => {
    const state: BuildState = {
      ...ref,
      status,
      init_status: 'succeeded',
      created: new Date().toISOString(),
      last_scaled: null,
      last_error: null,
    };
    return client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
      workflowId,
      taskQueue: config.taskQueue,
      args: [{ build: ref, settings: { maxInitializing: 1, initTimeoutSeconds: 60, noCleanupJob: true } }],
      typedSearchAttributes: buildSearchAttributes(state, new Date()),
    });
  };
  await start(`${buildWorkflowId(build.name)}-old-run`, build, 'stopping');
  await start(buildWorkflowId(other.name), other, 'started');
  await start(buildWorkflowId(build.name), build, 'stopped');

  const query = runningBuildsQuery(config.taskQueue);
  await waitFor('both rows visible', async () => (await client.workflow.count(query)).count === 3);
  const rows = await listBuildRows(client, query);
  expect(rows.map((b) => `${b.name} ${b.status}`).sort()).toEqual(
    [`${build.name} stopped`, `${other.name} started`].sort(),
  );
  const listed = await listBuilds(client, config, { repo: 'oca/rows' });
  expect(listed.map((b) => `${b.name} ${b.status}`).sort()).toEqual(
    [`${build.name} stopped`, `${other.name} started`].sort(),
  );
});
