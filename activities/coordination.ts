import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Config } from '../common/config';
import type { BuildSnapshot } from '../common/types';
import { buildStateQuery } from '../workflows/definitions';
import {
  initSlotsWorkflowId,
  requestSlotSignal,
  type initSlotsWorkflow,
  type SlotRequest,
} from '../workflows/init-slots';

// Activities that talk to Temporal itself, for the workflows that coordinate builds.

export function createCoordinationActivities(config: Config) {
  return {
    /** Queues `workflowId` for an init slot, starting the coordinator if it is not running. */
    async requestInitSlot(workflowId: string, capacity: number): Promise<void> {
      await Context.current().client.workflow.signalWithStart<typeof initSlotsWorkflow, [SlotRequest]>(
        'initSlotsWorkflow',
        {
          workflowId: initSlotsWorkflowId(config.taskQueue),
          taskQueue: config.taskQueue,
          args: [{ capacity, holders: [], waiting: [] }],
          signal: requestSlotSignal,
          signalArgs: [{ workflowId, capacity }],
        },
      );
    },

    /** The exact state of every running build of this task queue. */
    async deployedBuilds(): Promise<BuildSnapshot[]> {
      const { client } = Context.current();
      const query = `WorkflowType = 'buildWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '${config.taskQueue}'`;
      const snapshots: BuildSnapshot[] = [];
      for await (const { workflowId } of client.workflow.list({ query })) {
        Context.current().heartbeat();
        try {
          snapshots.push(await client.workflow.getHandle(workflowId).query(buildStateQuery));
        } catch (error) {
          // Listed a moment ago, gone now: nothing to evict.
          if (!(error instanceof WorkflowNotFoundError)) throw error;
        }
      }
      return snapshots;
    },

    /** Those of `workflowIds` whose workflow is no longer running. */
    async endedWorkflows(workflowIds: string[]): Promise<string[]> {
      const { client } = Context.current();
      const ended: string[] = [];
      for (const workflowId of workflowIds) {
        try {
          const { status } = await client.workflow.getHandle(workflowId).describe();
          if (status.name !== 'RUNNING') ended.push(workflowId);
        } catch (error) {
          if (!(error instanceof WorkflowNotFoundError)) throw error;
          ended.push(workflowId);
        }
      }
      return ended;
    },
  };
}
