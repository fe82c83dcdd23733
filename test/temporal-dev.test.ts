import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startSearchAttributes } from '../api/build-client';
import { buildRef } from '../common/build';
import { freePort } from '../scripts/processes';
import { startTemporalDevServer, type TemporalDevServer } from '../scripts/temporal-dev';

// The dev server that `npm start`, the tests and the benchmarks run, as they configure it: its
// search attributes are all registered when it starts, so a start does not read them again
// from the database, whose one connection a burst's starts would queue for.

const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-temporal-dev-'));
let server: TemporalDevServer;
let connection: Connection;

beforeAll(async () => {
  server = await startTemporalDevServer(workDir, { metricsPort: await freePort() });
  connection = await Connection.connect({ address: server.address });
});

afterAll(async () => {
  await connection?.close();
  await server?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

/** How many times the server has read the cluster metadata (where search attributes live). */
async function clusterMetadataReads(): Promise<number> {
  const text = await (await fetch(server.metricsUrl as string)).text();
  return [
    ...text.matchAll(
      /^persistence_latency_count\{[^}]*operation="GetCurrentClusterMetadata"[^}]*\} (\d+)$/gm,
    ),
  ].reduce((sum, [, count]) => sum + Number(count), 0);
}

it('starts builds with their search attributes without reading them from the database', async () => {
  const client = new Client({ connection });
  const starts = 10;
  // The cache is filled by the first start; the ones after it are what a burst's starts are.
  const startOne = (pr: number) => {
    const build = buildRef({
      repo: 'oca/mis-builder',
      target_branch: '16.0',
      pr,
      git_commit: `${pr}`.padStart(40, 'a'),
    });
    return client.workflow.start('notRunByAnyWorker', {
      workflowId: build.name,
      taskQueue: 'temporal-dev-test',
      typedSearchAttributes: startSearchAttributes(build),
    });
  };
  await startOne(100);
  const before = await clusterMetadataReads();
  for (let pr = 1; pr <= starts; pr++) await startOne(pr);
  expect(await clusterMetadataReads()).toBeLessThan(before + starts);
});
