import { ScheduleNotFoundError, type Client } from '@temporalio/client';

/**
 * What the newest finished run of a schedule returned, from the schedule's recent actions (the
 * last 10 it started): a call or two when the last run finished, whatever the number of runs.
 * Undefined when none of them finished (or the schedule does not exist).
 */
export async function lastScheduledResult<T>(client: Client, scheduleId: string): Promise<T | undefined> {
  let recent;
  try {
    ({ recentActions: recent } = (await client.schedule.getHandle(scheduleId).describe()).info);
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return undefined;
    throw error;
  }
  for (const { action } of [...recent].reverse()) {
    const run = client.workflow.getHandle(action.workflow.workflowId, action.workflow.firstExecutionRunId);
    if ((await run.describe()).status.name === 'COMPLETED') return (await run.result()) as T;
  }
  return undefined;
}
