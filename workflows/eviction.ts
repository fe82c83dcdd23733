import {
  ApplicationFailure,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import type { BuildActivities } from '../activities';
import {
  orderCommands,
  orderStillApplies,
  type EvictionLimits,
  type EvictionOrder,
  type EvictionPlan,
} from '../common/eviction';
import type { BuildCommand, BuildSnapshot } from '../common/types';
import {
  buildWorkflowId,
  EVICTION_ORDER_REFUSED,
  evictUpdate,
  stopSignal,
  undeploySignal,
} from './definitions';

// Run by a Temporal Schedule: keeps the cluster within max_started and max_deployed by
// telling build workflows, never by touching Kubernetes behind their back.

const { evict, evictionPlan } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
});

/**
 * Release v3: the activity gives each build its order as an update it takes only in the state it
 * was chosen in, one round trip (and one replay of a build the worker does not hold) where a
 * query and then a signal took two.
 */
const EVICTION_ORDERS_PATCH = 'eviction-orders';

export async function evictionWorkflow(limits: EvictionLimits): Promise<EvictionPlan> {
  // Every build acted on is chosen from its exact state, not from visibility's eventually
  // consistent view: a second run right after this one sees the stops and undeploys it asked
  // for. Visibility only picks which builds to tell.
  const plan = patched(EVICTION_ORDERS_PATCH) ? await evict(limits) : await signalled(limits);
  if (plan.stop.length || plan.undeploy.length) log.info('evicting builds', { ...plan });
  return plan;
}

/** Runs started before release v3: the plan from the activity, then a signal per build. */
async function signalled(limits: EvictionLimits): Promise<EvictionPlan> {
  const plan = await evictionPlan(limits);
  const signal = (name: string, command: typeof stopSignal | typeof undeploySignal) =>
    getExternalWorkflowHandle(buildWorkflowId(name)).signal(command);
  // All in one workflow task: one at a time took a workflow task each (minutes for hundreds
  // of builds on a busy worker). An undeploy overrides a stop, whichever arrives first.
  // A build that ended meanwhile does not keep the others from being told.
  const sent = await Promise.allSettled([
    ...plan.stop.map((name) => signal(name, stopSignal)),
    ...plan.undeploy.map((name) => signal(name, undeploySignal)),
  ]);
  const failed = sent.filter((result) => result.status === 'rejected');
  if (failed.length)
    log.warn('eviction could not signal some builds', { errors: failed.map((r) => String(r.reason)) });
  return plan;
}

/**
 * The build's side: eviction's orders, taken (as the commands they carry) only while the build
 * is as `snapshot` was when the order was decided; otherwise refused with the snapshot. Added
 * after release v2 with no patch: a handler issues no command, and no earlier history holds
 * this update (workers of older releases refuse it as unknown).
 */
export function takeEvictionOrders(
  snapshot: () => BuildSnapshot,
  receive: (command: BuildCommand) => unknown,
): void {
  const take = (order: EvictionOrder) => {
    for (const command of orderCommands(order)) receive(command);
  };
  setHandler(evictUpdate, take, {
    validator(order) {
      if (orderStillApplies(snapshot(), order)) return;
      throw ApplicationFailure.create({
        type: EVICTION_ORDER_REFUSED,
        message: 'the build changed since eviction chose it',
        nonRetryable: true,
        details: [snapshot()],
      });
    },
  });
}
