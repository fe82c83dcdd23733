import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { Config } from '../common/config';
import { evict, type EvictionLimits, type EvictionPlan, type EvictionSource } from '../common/eviction';
import { listRunningBuilds } from '../common/build-list';
import { runningBuildsQuery, searchAttributes } from '../common/search-attributes';
import type { BuildSnapshot, BuildStatus } from '../common/types';
import {
  buildWorkflowId,
  EVICTION_ORDER_REFUSED,
  evictUpdate,
  initSlotsWorkflowId,
  releaseSlotSignal,
  requestSlotSignal,
  type InitSlotsWorkflow,
  type SlotRequest,
} from '../workflows/definitions';

// Activities that talk to Temporal itself, for the workflows that coordinate builds.

const SLOW_EVICTION_MS = 5_000;
/** A build's workflow answers an order in a workflow task; one stuck must not hold eviction. */
const ORDER_TIMEOUT_MS = 30_000;

export function createCoordinationActivities(config: Config) {
  const activities = {
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
     * Stops and undeploys what the limits ask for: candidates from visibility, each told by an
     * update that it takes only in the state it was chosen in (see `evict`). Returns the orders
     * taken.
     */
    async evict(limits: EvictionLimits): Promise<EvictionPlan> {
      const { client } = Context.current();
      const running = runningBuildsQuery(config.taskQueue);
      const withStatus = (statuses?: readonly BuildStatus[]) =>
        statuses
          ? `${running} AND ${searchAttributes.status.name} IN (${statuses.map((s) => `'${s}'`).join(', ')})`
          : running;
      const source: EvictionSource = {
        count: async (statuses) => (await client.workflow.count(withStatus(statuses))).count,
        async list(statuses) {
          const builds = await listRunningBuilds(client, config.taskQueue, { statuses }, () =>
            Context.current().heartbeat(),
          );
          return builds.map((build) => ({ ...build, last_error: null }));
        },
        async order(name, order) {
          Context.current().heartbeat();
          const handle = client.workflow.getHandle(buildWorkflowId(name));
          try {
            await client.withDeadline(Date.now() + ORDER_TIMEOUT_MS, () =>
              handle.executeUpdate(evictUpdate, { args: [order] }),
            );
            return { taken: true };
          } catch (error) {
            // Listed a moment ago, gone now: nothing to evict.
            if (error instanceof WorkflowNotFoundError) return { taken: false, exact: undefined };
            const refusal = error instanceof WorkflowUpdateFailedError ? error.cause : undefined;
            if (refusal instanceof ApplicationFailure && refusal.type === EVICTION_ORDER_REFUSED)
              return { taken: false, exact: refusal.details?.[0] as BuildSnapshot };
            throw error;
          }
        },
      };
      const { stop, undeploy, ordered, skipped, listMs, orderMs } = await evict(source, limits);
      for (const { name, error } of skipped)
        log.warn('eviction skipped a build it could not give an order', { build: name, error });
      // Slower than an eviction run should ever be: worth an operator's look.
      log[listMs + orderMs > SLOW_EVICTION_MS ? 'warn' : 'debug']('eviction', {
        stop: stop.length,
        undeploy: undeploy.length,
        ordered,
        listMs,
        orderMs,
      });
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
  return {
    ...activities,
    /**
     * What eviction runs started before release v3 call, and then signal the builds it returns:
     * the orders are given here already, and the signals find them pending (no-ops).
     */
    evictionPlan: activities.evict,
  };
}
