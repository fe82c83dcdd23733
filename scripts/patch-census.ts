import type { Client } from '@temporalio/client';
import { buildWorkflowsQuery } from '../common/search-attributes';
import { initSlotsWorkflowId } from '../workflows/definitions';
import { runCommand } from '../worker/command';

// `npm run patch-census -- <rollout time>` (README, Upgrading): how many open workflow runs of
// this deployment started before a release's rollout, and so may still take the code paths
// its patches kept for them. At 0, that release's patches can be deprecated
// (`deprecatePatch`); at 0 for the release that deprecated them, removed.

export interface PatchCensus {
  /** Running build workflow runs started before the time. */
  builds: number;
  /** Whether the init-slot coordinator's current run started before it. */
  coordinator: boolean;
  /** When the oldest of those runs started. */
  oldest?: Date;
}

export async function runsStartedBefore(
  client: Client,
  taskQueue: string,
  before: Date,
): Promise<PatchCensus> {
  const startedBefore = `ExecutionStatus = 'Running' AND StartTime < '${before.toISOString()}'`;
  const { count } = await client.workflow.count(`${buildWorkflowsQuery(taskQueue)} AND ${startedBefore}`);
  let oldest: Date | undefined;
  // Visibility lists newest first: the oldest is the last of them.
  for await (const run of client.workflow.list({
    query: `${buildWorkflowsQuery(taskQueue)} AND ${startedBefore}`,
  })) {
    oldest = run.startTime;
  }
  const coordinator = await client.workflow
    .getHandle(initSlotsWorkflowId(taskQueue))
    .describe()
    .then((run) => run.status.name === 'RUNNING' && run.startTime < before)
    .catch(() => false);
  return { builds: count, coordinator, oldest };
}

if (require.main === module) {
  const [when] = process.argv.slice(2);
  const before = new Date(when ?? '');
  if (!when || Number.isNaN(before.getTime())) {
    console.error('usage: npm run patch-census -- <rollout time, e.g. 2026-12-02T08:00:00Z>');
    process.exit(2);
  }
  runCommand(async (client, config) => {
    const census = await runsStartedBefore(client, config.taskQueue, before);
    console.log(
      `open runs started before ${before.toISOString()}: ${census.builds} build workflows` +
        `${census.oldest ? ` (oldest ${census.oldest.toISOString()})` : ''}, ` +
        `init-slot coordinator: ${census.coordinator ? 'yes' : 'no'}`,
    );
  });
}
