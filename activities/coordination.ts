import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import type { Config } from '../common/config';
import { BuildIndex, LastingDisagreement } from '../common/build-index';
import { CHANGE_FEED_LOOKBACK_MS } from '../common/change-feed';
import {
  DEPLOYED,
  evict,
  RUNNING,
  type EvictionLimits,
  type EvictionPlan,
  type EvictionSource,
} from '../common/eviction';
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
/** How long a run waits for the candidates' index: its first list takes seconds at 7,000 builds. */
const INDEX_WAIT_MS = 120_000;
const HEARTBEAT_MS = 10_000;
/**
 * The index disagreeing with visibility's counts this long is more than lag: a change recorded
 * later than the change feed looks back, never to be read; the index lists every build again.
 */
const DISAGREEMENT_BEFORE_RELIST_MS = 2 * CHANGE_FEED_LOOKBACK_MS;

export function createCoordinationActivities(config: Config) {
  /**
   * Eviction's candidates: every running build as visibility lists it, kept current from the
   * change feed, so that a run over the limits reads the builds that changed since the previous
   * such run instead of every build (5.5 s of the run, and most of Temporal's CPU for it, at
   * 7,000). Runs within the limits do not read it: a read lists again the changes of the feed's
   * lookback (a minute), which after a burst is the builds of the burst, and a run with nothing
   * to do must cost nothing per build. (The first of them has it list every build, once.)
   */
  let candidates: BuildIndex | undefined;
  const candidatesOf = (client: Client) => (candidates ??= new BuildIndex(client, config, INDEX_WAIT_MS));
  const disagreement = new LastingDisagreement(DISAGREEMENT_BEFORE_RELIST_MS);

  /** The index's builds with one of `statuses`, checked against visibility's `counts` of them. */
  const indexedBuilds = async (
    statuses: readonly BuildStatus[] | undefined,
    counted: Map<string, number>,
  ) => {
    const context = Context.current();
    const index = candidatesOf(context.client);
    const heartbeat = setInterval(() => context.heartbeat(), HEARTBEAT_MS);
    try {
      const [builds, { statuses: tally }] = await Promise.all([
        index.list(statuses ? { statuses } : {}),
        index.counts(),
      ]);
      const indexed = [RUNNING, DEPLOYED].map((of) => of.reduce((sum, status) => sum + tally[status], 0));
      const visible = [RUNNING, DEPLOYED].map((of) => counted.get(of.join()) ?? 0);
      if (disagreement.check(indexed, visible)) {
        log.info('eviction: the build index disagrees with visibility for long; listing every build again', {
          'running, deployed': { indexed, visible },
        });
        index.relist();
      }
      return builds;
    } finally {
      clearInterval(heartbeat);
    }
  };

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
      /** This run's visibility counts, by the statuses counted. */
      const counted = new Map<string, number>();
      const source: EvictionSource = {
        async count(statuses) {
          const { count } = await client.workflow.count(withStatus(statuses));
          counted.set(statuses.join(), count);
          return count;
        },
        async list(statuses) {
          const builds = await indexedBuilds(statuses, counted);
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
      // The first run over the limits after the worker starts would list every build (seconds
      // at 7,000): the worker's first run within them has the index list them, once, in the
      // background, and that run reads only what changed since.
      if (!candidates) candidatesOf(client).warm();
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
      const states = await workflowStates(Context.current().client, workflowIds);
      return workflowIds.filter((workflowId) => states.get(workflowId) !== 'running');
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

/**
 * Whether each of `workflowIds` is running, has ended, or is unknown to Temporal: never started
 * in this namespace, or ended so long ago that its history is gone.
 */
export async function workflowStates(
  client: Client,
  workflowIds: string[],
): Promise<Map<string, 'running' | 'ended' | 'unknown'>> {
  const states = new Map<string, 'running' | 'ended' | 'unknown'>();
  for (const workflowId of workflowIds) {
    try {
      const { status } = await client.workflow.getHandle(workflowId).describe();
      states.set(workflowId, status.name === 'RUNNING' ? 'running' : 'ended');
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) throw error;
      states.set(workflowId, 'unknown');
    }
  }
  return states;
}
