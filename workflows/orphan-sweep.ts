import { log, proxyActivities } from '@temporalio/workflow';
import type { BuildActivities } from '../activities';
import type { OrphanSweep } from '../common/types';

// Run by a Temporal Schedule: the objects of builds whose workflow is gone (terminated from the
// Temporal UI, lost with a namespace, a worker crash between creating and recording them) are
// deleted, so that nothing labelled with a build outlives it.

const { sweepOrphans } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 3 },
});

export async function orphanSweepWorkflow(options: { graceSeconds: number }): Promise<OrphanSweep> {
  const swept = await sweepOrphans(options.graceSeconds);
  if (swept.builds.length) log.warn('swept the objects of builds without a running workflow', { ...swept });
  return swept;
}
