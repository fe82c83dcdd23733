import { expect, it } from 'vitest';
import { ChangeFeed } from '../common/change-feed';
import { buildRef } from '../common/build';
import type { BuildRef } from '../common/types';
import { buildSearchAttributes, runningBuildsQuery } from '../common/search-attributes';
import type { buildWorkflow } from '../workflows/build';
import { buildWorkflowId } from '../workflows/definitions';
import { SHA, testConfig, terminateWorkflowsAfterAll, useTemporalClient, waitFor } from './helpers';

// What each read of the change feed costs: the changes since the previous read, not every
// change within the lookback (a minute: after a mass eviction, hundreds of ended builds). A
// clock of the test's own plays the reads seconds apart; the change is a real workflow's
// RunboatUpdated stamp, compared by the real server.

const config = testConfig();
const temporal = useTemporalClient(config);

terminateWorkflowsAfterAll(temporal, config);

/**
 * A stopped build's workflow, its change stamped `stamped`. No worker polls this task queue: the
 * workflow stays as started, with its stamp.
 */
function startStampedBuild(build: BuildRef, stamped: number) {
  return temporal.client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
    workflowId: buildWorkflowId(build.name),
    taskQueue: config.taskQueue,
    args: [{ build, settings: { maxInitializing: 1, initTimeoutSeconds: 60, noCleanupJob: true } }],
    typedSearchAttributes: buildSearchAttributes(
      {
        ...build,
        status: 'stopped',
        init_status: 'succeeded',
        created: new Date(stamped).toISOString(),
        last_scaled: null,
        last_error: null,
      },
      new Date(stamped),
    ),
  });
}

it('lists a change again only in a deep read, once it is older than the recent window', async () => {
  const { client } = temporal;
  const build = buildRef({ repo: 'oca/feed', target_branch: '16.0', pr: 1, git_commit: SHA('f') });
  const stamped = Date.now();
  await startStampedBuild(build, stamped);
  await waitFor(
    'the build visible',
    async () => (await client.workflow.count(runningBuildsQuery(config.taskQueue))).count === 1,
  );

  // Lookback 60 s: recent window 5 s, a deep read at most every 10 s.
  let clock = stamped;
  const feed = new ChangeFeed(client, config, 60_000, stamped, () => clock);
  const listed = async (at: number) => {
    clock = stamped + at;
    return (await feed.read()).changed.map((b) => b.name);
  };
  expect(await listed(1_000), 'the first read is deep').toEqual([build.name]);
  expect(await listed(7_000), 'within 5 s before the last read').toEqual([build.name]);
  expect(await listed(10_000), 'older than 5 s before the last read').toEqual([]);
  expect(await listed(12_000), 'a deep read, 11 s after the last').toEqual([build.name]);
  expect(await listed(13_000), 'then recent reads again').toEqual([]);
});

it('lists a build whose workflow was terminated as gone at its next deep read', async () => {
  const { client } = temporal;
  const build = buildRef({ repo: 'oca/feed', target_branch: '16.0', pr: 2, git_commit: SHA('e') });
  const started = Date.now();
  const handle = await startStampedBuild(build, started);
  let clock = started;
  const feed = new ChangeFeed(client, config, 60_000, started, () => clock);
  const goneAt = async (at: number) => {
    clock = started + at;
    return (await feed.read()).gone.map((b) => b.name);
  };
  expect(await goneAt(1_000), 'running (a deep read)').not.toContain(build.name);
  await handle.terminate('ended otherwise than by an undeploy');
  await waitFor(
    'the termination visible',
    async () =>
      (await client.workflow.count(`WorkflowId = '${handle.workflowId}' AND ExecutionStatus = 'Terminated'`))
        .count === 1,
  );
  // Reads between deep ones ask for undeployed (completed) builds only.
  expect(await goneAt(2_000), 'a read 1 s after the deep one').not.toContain(build.name);
  expect(await goneAt(12_000), 'the next deep read').toContain(build.name);
});
