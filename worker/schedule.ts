import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import type { Config } from '../common/config';
import type { evictionWorkflow } from '../workflows';

export const evictionScheduleId = (config: Config): string => `runboat-eviction-${config.taskQueue}`;

/**
 * Creates the eviction schedule, or brings an existing one up to this configuration: every
 * worker calls this at start, so the last one started decides the interval and limits.
 */
export async function ensureEvictionSchedule(client: Client, config: Config): Promise<void> {
  const options: ScheduleOptions = {
    scheduleId: evictionScheduleId(config),
    spec: { intervals: [{ every: `${config.evictionIntervalSeconds} seconds` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'evictionWorkflow',
      workflowId: `runboat-eviction-${config.taskQueue}`,
      taskQueue: config.taskQueue,
      args: [{ maxStarted: config.maxStarted, maxDeployed: config.maxDeployed }] satisfies Parameters<
        typeof evictionWorkflow
      >,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP },
  };
  try {
    await client.schedule.create(options);
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
    await client.schedule.getHandle(options.scheduleId).update((previous) => ({
      ...previous,
      spec: options.spec,
      action: options.action,
      policies: { ...previous.policies, overlap: ScheduleOverlapPolicy.SKIP },
    }));
  }
}
