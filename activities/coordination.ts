import { Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Config } from '../common/config';
import {
  selectEviction,
  type EvictionLimits,
  type EvictionPlan,
  type EvictionSource,
} from '../common/eviction';
import { buildFromSearchAttributes, runningBuildsQuery, searchAttributes } from '../common/search-attributes';
import type { BuildState, BuildStatus } from '../common/types';
import {
  buildStateQuery,
  buildWorkflowId,
  initSlotsWorkflowId,
  releaseSlotSignal,
  requestSlotSignal,
  type InitSlotsWorkflow,
  type SlotRequest,
} from '../workflows/definitions';

// Activities that talk to Temporal itself, for the workflows that coordinate builds.

export function createCoordinationActivities(config: Config) {
  return {
    /** Queues `workflowId` for an init slot, starting the coordinator if it is not running. */
    async requestInitSlot(workflowId: string, capacity: number, token?: string): Promise<void> {
      await Context.current().client.workflow.signalWithStart<InitSlotsWorkflow, [SlotRequest]>(
        'initSlotsWorkflow',
        {
          workflowId: initSlotsWorkflowId(config.taskQueue),
          taskQueue: config.taskQueue,
          args: [{ capacity, holders: [], waiting: [] }],
          // Its whole history is replayed after a timed-out task: give that room on a busy worker.
          workflowTaskTimeout: '1 minute',
          signal: requestSlotSignal,
          signalArgs: [{ workflowId, capacity, ...(token === undefined ? {} : { token }) }],
        },
      );
    },

    /** Gives `workflowId`'s init slot back; no coordinator running means no slot to give. */
    async releaseInitSlot(workflowId: string): Promise<void> {
      try {
        await Context.current()
          .client.workflow.getHandle(initSlotsWorkflowId(config.taskQueue))
          .signal(releaseSlotSignal, workflowId);
      } catch (error) {
        if (!(error instanceof WorkflowNotFoundError)) throw error;
      }
    },

    /**
     * What eviction stops and undeploys: candidates from visibility, each build acted on
     * re-checked by its query (see `selectEviction`).
     */
    async evictionPlan(limits: EvictionLimits): Promise<EvictionPlan> {
      const { client } = Context.current();
      const running = runningBuildsQuery(config.taskQueue);
      const withStatus = (statuses?: readonly BuildStatus[]) =>
        statuses
          ? `${running} AND ${searchAttributes.status.name} IN (${statuses.map((s) => `'${s}'`).join(', ')})`
          : running;
      const source: EvictionSource = {
        count: async (statuses) => (await client.workflow.count(withStatus(statuses))).count,
        async list(statuses) {
          const builds: BuildState[] = [];
          for await (const workflow of client.workflow.list({ query: withStatus(statuses) })) {
            Context.current().heartbeat();
            const build = buildFromSearchAttributes(workflow.typedSearchAttributes);
            if (build) builds.push({ ...build, last_error: null });
          }
          return builds;
        },
        async query(name) {
          try {
            return await client.workflow.getHandle(buildWorkflowId(name)).query(buildStateQuery);
          } catch (error) {
            // Listed a moment ago, gone now: nothing to evict.
            if (error instanceof WorkflowNotFoundError) return undefined;
            throw error;
          }
        },
      };
      const { stop, undeploy, queried, skipped } = await selectEviction(source, limits);
      for (const { name, error } of skipped)
        log.warn('eviction skipped a build whose state it could not query', { build: name, error });
      log.debug('eviction plan', { stop: stop.length, undeploy: undeploy.length, queried });
      return { stop, undeploy };
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
