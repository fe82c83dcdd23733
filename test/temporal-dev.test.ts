import { Client } from '@temporalio/client';
import { expect, inject, it } from 'vitest';
import { startSearchAttributes } from '../common/build-start';
import { buildRef } from '../common/build';
import { testConfig, useTemporalClient } from './helpers';

// The dev server that `npm start`, the tests and the benchmarks run, as they configure it (this
// is the suite's own): its search attributes are all registered when it starts, so a start does
// not read them again from the database, whose one connection a burst's starts would queue for.

const config = testConfig();
const temporal = useTemporalClient(config);

/** How many times the server has read the cluster metadata (where search attributes live). */
async function clusterMetadataReads(): Promise<number> {
  const text = await (await fetch(inject('temporalMetricsUrl'))).text();
  return [
    ...text.matchAll(
      /^persistence_latency_count\{[^}]*operation="GetCurrentClusterMetadata"[^}]*\} (\d+)$/gm,
    ),
  ].reduce((sum, [, count]) => sum + Number(count), 0);
}

it('starts builds with their search attributes without reading them from the database', async () => {
  const client: Client = temporal.client;
  const starts = 10;
  // The cache is filled by the first start; the ones after it are what a burst's starts are.
  // Other test files use the server meanwhile: with the cache off, their calls only add reads.
  const startOne = (pr: number) => {
    const build = buildRef({
      repo: 'oca/mis-builder',
      target_branch: '16.0',
      pr,
      git_commit: `${pr}`.padStart(40, 'a'),
    });
    return client.workflow.start('notRunByAnyWorker', {
      workflowId: build.name,
      taskQueue: config.taskQueue,
      typedSearchAttributes: startSearchAttributes(build),
    });
  };
  await startOne(100);
  const before = await clusterMetadataReads();
  for (let pr = 1; pr <= starts; pr++) await startOne(pr);
  expect(await clusterMetadataReads()).toBeLessThan(before + starts);
});
