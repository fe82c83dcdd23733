import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { expect, it } from 'vitest';
import { listBuilds } from '../common/build-list';
import { buildRef } from '../common/build';
import { listRunningBuilds } from '../common/build-list';
import { buildSearchAttributes, buildWorkflowsQuery } from '../common/search-attributes';
import type { BuildRef, BuildState, BuildStatus } from '../common/types';
import type { buildWorkflow } from '../workflows/build';
import { buildWorkflowId } from '../workflows/definitions';
import type { buildWorkflow as continuedRunsWorkflow } from './fixtures/workflows/continued-runs';
import { SHA, testConfig, terminateWorkflowsAfterAll, useTemporalClient, waitFor } from './helpers';

// A build continuing as new (at rest, or with a full history) is two rows in visibility for a
// moment: its old run, running or closed as ContinuedAsNew, and its new run, running or not
// recorded yet. Every list of builds (eviction's candidates, the API's index and boards, the
// per-ref cap, undeploying a closed PR's builds, wake on visit) must count it once, as its newest
// run has it, and must not lose it in between. Real workflows carrying builds' search
// attributes hold visibility in those states.

const config = testConfig();
const temporal = useTemporalClient(config);

terminateWorkflowsAfterAll(temporal, config);

const ref = (pr: number, char: string) =>
  buildRef({ repo: 'oca/rows', target_branch: '16.0', pr, git_commit: SHA(char) });

const stateOf = (build: BuildRef, status: BuildStatus): BuildState => ({
  ...build,
  status,
  init_status: 'succeeded',
  created: new Date().toISOString(),
  last_scaled: null,
  last_error: null,
});

const shown = (builds: { name: string; status: string }[]) =>
  builds.map((b) => `${b.name} ${b.status}`).sort();

it('lists a build with two running rows once, as its newer run has it', async () => {
  const { client } = temporal;
  const build = ref(7, 'd');
  const other = ref(8, 'e');
  // No worker polls these: they stay as started.
  const start = (workflowId: string, of: BuildRef, status: BuildStatus) =>
    client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
      workflowId,
      taskQueue: config.taskQueue,
      args: [{ build: of, settings: { maxInitializing: 1, initTimeoutSeconds: 60, noCleanupJob: true } }],
      typedSearchAttributes: buildSearchAttributes(stateOf(of, status), new Date()),
    });
  await start(`${buildWorkflowId(build.name)}-old-run`, build, 'stopped');
  await start(buildWorkflowId(other.name), other, 'started');
  await start(buildWorkflowId(build.name), build, 'starting');

  const query = `${buildWorkflowsQuery(config.taskQueue)} AND RunboatRepo = 'oca/rows'`;
  await waitFor('every row visible', async () => (await client.workflow.count(query)).count === 3);
  expect(shown(await listBuilds(client, config, { repo: 'oca/rows' }))).toEqual(
    shown([
      { name: build.name, status: 'starting' },
      { name: other.name, status: 'started' },
    ]),
  );
  // Its old run is still `stopped`: a build started since is not a stopped build.
  expect(await listRunningBuilds(client, config.taskQueue, { statuses: ['stopped'] })).toEqual([]);
  expect(shown(await listRunningBuilds(client, config.taskQueue, { status: 'starting' }))).toEqual(
    shown([{ name: build.name, status: 'starting' }]),
  );
});

it('lists a build whose new run is not recorded yet, and not one whose new run has ended', async () => {
  const { client } = temporal;
  const continuing = ref(9, 'f');
  const ended = ref(10, 'a');
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    workflowsPath: path.resolve(__dirname, 'fixtures', 'workflows', 'continued-runs.ts'),
  });
  try {
    await worker.runUntil(async () => {
      const start = (of: BuildRef, then: 'rename' | 'end') =>
        client.workflow.start<typeof continuedRunsWorkflow>('buildWorkflow', {
          workflowId: buildWorkflowId(of.name),
          taskQueue: config.taskQueue,
          args: [{ then, renameTo: `${of.name}-not-recorded` }],
          typedSearchAttributes: buildSearchAttributes(stateOf(of, 'stopped'), new Date()),
        });
      await start(continuing, 'rename');
      await start(ended, 'end');
      const closed = `${buildWorkflowsQuery(config.taskQueue)} AND RunboatPr IN (9, 10) AND ExecutionStatus != 'Running'`;
      await waitFor('the runs that continued, and the ended run, closed', async () => {
        const statuses = [];
        for await (const row of client.workflow.list({ query: closed })) statuses.push(row.status.name);
        return statuses.sort().join() === 'COMPLETED,CONTINUED_AS_NEW,CONTINUED_AS_NEW';
      });
      await waitFor(
        'the renamed run listed',
        async () =>
          (await listRunningBuilds(client, config.taskQueue, { name: `${continuing.name}-not-recorded` }))
            .length === 1,
      );
    });
  } finally {
    await connection.close();
  }
  expect(shown(await listRunningBuilds(client, config.taskQueue, { name: continuing.name }))).toEqual(
    shown([{ name: continuing.name, status: 'stopped' }]),
  );
  expect(
    shown(await listRunningBuilds(client, config.taskQueue, { statuses: ['stopped'], repo: 'oca/rows' })),
  ).toContain(`${continuing.name} stopped`);
  expect(await listRunningBuilds(client, config.taskQueue, { pr: 10 })).toEqual([]);
  // By slug, as wake on visit looks a host's build up (from the index's list).
  expect(shown(await listRunningBuilds(client, config.taskQueue, { slug: continuing.slug }))).toEqual(
    shown([{ name: continuing.name, status: 'stopped' }]),
  );
  expect(await listRunningBuilds(client, config.taskQueue, { slug: ended.slug })).toEqual([]);
});
