import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { listBuildChanges } from '../common/build-list';
import type { Config } from '../common/config';
import { buildWorkflowsQuery, runningBuildsQuery } from '../common/search-attributes';
import { buildWorkflowId } from '../workflows/definitions';
import { startTemporalDevServer } from './temporal-dev';
import { fillBuild, fillVisibility } from './visibility-fill';

// `npm run bench:feed`: what one read of the change feed (what every API request and eviction
// run reads first) costs on the dev server's SQLite visibility at BENCH_FEED_BUILDS (20,000)
// open build workflows, BENCH_FEED_ENDED (200) of them then ended, nothing changed in the
// window read: a read and a late read as `listBuildChanges` makes them, and their queries one by
// one, with the earlier form of the "ended" query for comparison. Filling takes about 5 minutes at 20,000;
// BENCH_FEED_DIR=<folder of an earlier run> reuses its database instead (the run says where).

const BUILDS = Number(process.env.BENCH_FEED_BUILDS ?? 20_000);
const ENDED = Number(process.env.BENCH_FEED_ENDED ?? 200);
const READS = 10;
/**
 * Between two reads: back to back, the dev server held some queries back for a second or two
 * (which the maximum shows), a stall of its own and not the read's cost.
 */
const READ_GAP_MS = 1_000;
const TASK_QUEUE = 'bench';

const repoOf = (i: number) => `oca/repo-${i % 50}`;

/** Open build workflows, as the scale bench adds them; the first ENDED of them then ended. */
async function fill(client: Client): Promise<void> {
  // Never used: no worker polls the bench's task queue, and the builds wait 30 days to start.
  const settings = { maxInitializing: 20, initTimeoutSeconds: 3600, noCleanupJob: false };
  await fillVisibility(client, { taskQueue: TASK_QUEUE, settings, repoOf }, 0, BUILDS);
  for (let i = 0; i < ENDED; i++)
    await client.workflow
      .getHandle(buildWorkflowId(fillBuild(i, repoOf(i)).name))
      .terminate('ended, as an undeploy');
}

async function p50(read: () => Promise<unknown>): Promise<string> {
  const ms: number[] = [];
  for (let i = 0; i < READS; i++) {
    const t = performance.now();
    await read();
    ms.push(performance.now() - t);
    await new Promise((resolve) => setTimeout(resolve, READ_GAP_MS));
  }
  ms.sort((a, b) => a - b);
  return `${ms[READS / 2].toFixed(1)} ms (min ${ms[0].toFixed(1)}, max ${ms[READS - 1].toFixed(1)})`;
}

async function main(): Promise<void> {
  const reused = process.env.BENCH_FEED_DIR;
  const dir = reused ?? mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-feed-'));
  const server = await startTemporalDevServer(dir, { dbFile: path.join(dir, 'temporal.db') });
  const connection = await Connection.connect({ address: server.address });
  try {
    const client = new Client({ connection });
    if (!reused) {
      const t = Date.now();
      await fill(client);
      console.log(
        `filled ${BUILDS} builds (${ENDED} ended) in ${Math.round((Date.now() - t) / 1000)} s: ${dir}`,
      );
      // Past the window read below: the read finds nothing changed, what it costs at rest.
      await new Promise((resolve) => setTimeout(resolve, 10_000));
    }
    const open = (await client.workflow.count(runningBuildsQuery(TASK_QUEUE))).count;
    const since = new Date(Date.now() - 5_000);
    const list = async (query: string) => {
      for await (const row of client.workflow.list({ query })) void row;
    };
    const ended = `${buildWorkflowsQuery(TASK_QUEUE)} AND CloseTime >= '${since.toISOString()}'`;
    const rows: Array<[string, () => Promise<unknown>]> = [
      [
        'a read (`listBuildChanges`: changed, undeployed)',
        () => listBuildChanges(client, { taskQueue: TASK_QUEUE } as Config, since, false),
      ],
      [
        'a late read (every ending too)',
        () => listBuildChanges(client, { taskQueue: TASK_QUEUE } as Config, since, true),
      ],
      [
        '— changed builds (`RunboatUpdated >=`)',
        () => list(`${runningBuildsQuery(TASK_QUEUE)} AND RunboatUpdated >= ${since.getTime()}`),
      ],
      ['— ended builds, one status', () => list(`${ended} AND ExecutionStatus = 'Completed'`)],
      [
        'ended builds as one query (`!= Running`, before)',
        () => list(`${ended} AND ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'`),
      ],
    ];
    console.log(
      `\nthe change feed on the Temporal dev server, ${open} open builds, ${os.cpus().length} cores, p50 of ${READS} reads\n`,
    );
    console.log('| read | p50 |\n| --- | --- |');
    for (const [what, read] of rows) console.log(`| ${what} | ${await p50(read)} |`);
  } finally {
    await connection.close();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
