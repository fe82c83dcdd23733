import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import type { Config } from '../common/config';
import type { evictionWorkflow, orphanSweepWorkflow } from '../workflows';
import {
  evictionScheduleId,
  orphanSweepScheduleId,
  webhookRedeliveryScheduleId,
} from '../workflows/definitions';

/** Orphans are rare (a workflow terminated by hand): a sweep every few minutes is plenty. */
const ORPHAN_SWEEP_INTERVAL = '10 minutes';
/** A push missed while the API was down waits at most this long for its build to start. */
const WEBHOOK_REDELIVERY_INTERVAL = '5 minutes';

/**
 * Creates the eviction schedule, or brings an existing one up to this configuration: every
 * worker calls this at start, so the last one started decides the interval and limits.
 */
export async function ensureEvictionSchedule(client: Client, config: Config): Promise<void> {
  await ensureSchedule(client, {
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
  });
}

/** The orphan sweep's schedule (workflows/orphan-sweep.ts), ensured like eviction's. */
export async function ensureOrphanSweepSchedule(client: Client, config: Config): Promise<void> {
  await ensureSchedule(client, {
    scheduleId: orphanSweepScheduleId(config),
    spec: { intervals: [{ every: ORPHAN_SWEEP_INTERVAL }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'orphanSweepWorkflow',
      workflowId: orphanSweepScheduleId(config),
      taskQueue: config.taskQueue,
      args: [{ graceSeconds: config.orphanGraceSeconds }] satisfies Parameters<typeof orphanSweepWorkflow>,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP },
  });
}

/**
 * The webhook redelivery's schedule (workflows/webhook-redelivery.ts) when RUNBOAT_REDELIVER_WEBHOOKS
 * names webhooks; removed when it names none.
 */
export async function ensureWebhookRedeliverySchedule(client: Client, config: Config): Promise<void> {
  const scheduleId = webhookRedeliveryScheduleId(config);
  if (!config.redeliverWebhooks.length) {
    await client.schedule
      .getHandle(scheduleId)
      .delete()
      .catch((error: unknown) => {
        if (!(error instanceof ScheduleNotFoundError)) throw error;
      });
    return;
  }
  await ensureSchedule(client, {
    scheduleId,
    spec: { intervals: [{ every: WEBHOOK_REDELIVERY_INTERVAL }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'webhookRedeliveryWorkflow',
      workflowId: scheduleId,
      taskQueue: config.taskQueue,
      args: [],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP },
  });
}

async function ensureSchedule(client: Client, options: ScheduleOptions): Promise<void> {
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
