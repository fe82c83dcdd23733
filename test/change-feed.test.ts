import { describe, expect, it } from 'vitest';
import { ReadOrder } from '../common/build-index';
import { ChangeFeed, type BuildChanges } from '../common/change-feed';
import { buildRef } from '../common/build';
import type { BuildRef } from '../common/types';
import { buildSearchAttributes, runningBuildsQuery } from '../common/search-attributes';
import type { buildWorkflow } from '../workflows/build';
import { buildWorkflowId } from '../workflows/definitions';
import { SHA, testConfig, terminateWorkflowsAfterAll, useTemporalClient, waitFor } from './helpers';

// What each read of the change feed costs: the changes since the previous read, not every
// change within the lookback (a minute: after a mass eviction, hundreds of ended builds), which
// a late read, beside the reads, lists. A clock of the test's own plays the reads seconds apart;
// the change is a real workflow's RunboatUpdated stamp, compared by the real server.

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

it('lists a change again only in a late read, once it is older than the recent window', async () => {
  const { client } = temporal;
  const build = buildRef({ repo: 'oca/feed', target_branch: '16.0', pr: 1, git_commit: SHA('f') });
  const stamped = Date.now();
  await startStampedBuild(build, stamped);
  await waitFor(
    'the build visible',
    async () => (await client.workflow.count(runningBuildsQuery(config.taskQueue))).count === 1,
  );

  // Lookback 60 s: recent window 5 s, a late read due at most every 10 s.
  let clock = stamped;
  const feed = new ChangeFeed(client, config, 60_000, stamped, () => clock);
  const names = ({ changed }: BuildChanges) => changed.map((b) => b.name);
  const listed = async (at: number) => {
    clock = stamped + at;
    return names(await feed.read());
  };
  const listedLate = async (at: number) => {
    clock = stamped + at;
    return names(await feed.readLate());
  };
  expect(feed.lateReadDue, 'the first late read is due at once').toBe(true);
  expect(await listedLate(1_000), 'a late read stops where a read beside it looks').toEqual([]);
  expect(await listed(1_000), 'within 5 s before the feed began').toEqual([build.name]);
  expect(feed.lateReadDue).toBe(false);
  expect(await listed(7_000), 'within 5 s before the last read').toEqual([build.name]);
  expect(await listed(10_000), 'older than 5 s before the last read').toEqual([]);
  clock = stamped + 11_000;
  expect(feed.lateReadDue, '10 s after the last late read').toBe(true);
  expect(await listedLate(12_000), 'a late read looks back a minute before the last read').toEqual([
    build.name,
  ]);
  expect(await listed(13_000), 'then recent reads again').toEqual([]);
});

it('lists a build whose workflow was terminated as gone at its next late read', async () => {
  const { client } = temporal;
  const build = buildRef({ repo: 'oca/feed', target_branch: '16.0', pr: 2, git_commit: SHA('e') });
  const started = Date.now();
  const handle = await startStampedBuild(build, started);
  let clock = started;
  const feed = new ChangeFeed(client, config, 60_000, started, () => clock);
  const goneAt = async (at: number, late = false) => {
    clock = started + at;
    return (await (late ? feed.readLate() : feed.read())).gone.map((b) => b.name);
  };
  expect(await goneAt(1_000, true), 'running (a late read)').not.toContain(build.name);
  expect(await goneAt(1_500), 'running (a read)').not.toContain(build.name);
  await handle.terminate('ended otherwise than by an undeploy');
  await waitFor(
    'the termination visible',
    async () =>
      (await client.workflow.count(`WorkflowId = '${handle.workflowId}' AND ExecutionStatus = 'Terminated'`))
        .count === 1,
  );
  // Reads ask for undeployed (completed) builds only...
  expect(await goneAt(30_000), 'a read after the termination').not.toContain(build.name);
  // ...and a late read looks at what ended up to 5 s before the last read.
  expect(await goneAt(35_000, true), 'the next late read').toContain(build.name);
});

describe('ReadOrder (a late read answered after later reads)', () => {
  it('keeps the state of the read that began last, a removal too, until forgotten', () => {
    const order = new ReadOrder();
    expect(order.newest('a', 100), 'a build never read').toBe(true);
    order.set('a', 200);
    expect(order.newest('a', 100), 'a late read begun before the read that found it').toBe(false);
    expect(order.newest('a', 200)).toBe(true);
    expect(order.newest('a', 300)).toBe(true);
    order.remove('a', 300);
    expect(order.newest('a', 250), 'nor does one undo its end').toBe(false);
    expect(order.newest('a', 300), 'a read of that time').toBe(true);
    order.set('a', 400); // deployed again
    expect(order.newest('a', 350)).toBe(false);
    order.remove('b', 500);
    order.forgetRemovedBefore(450);
    expect(order.newest('b', 450), 'a removal kept while a read can be under way').toBe(false);
    order.forgetRemovedBefore(501);
    expect(order.newest('b', 450), 'then forgotten').toBe(true);
    order.clear();
    expect(order.newest('a', 0)).toBe(true);
  });
});
