import { getExternalWorkflowHandle, log, proxyActivities } from '@temporalio/workflow';
import type { BuildActivities } from '../activities';
import { planEviction, type EvictionLimits, type EvictionPlan } from '../common/eviction';
import { buildWorkflowId, stopSignal, undeploySignal } from './definitions';

// Run by a Temporal Schedule: keeps the cluster within max_started and max_deployed by
// signalling build workflows, never by touching Kubernetes behind their back.

const { deployedBuilds } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
});

export async function evictionWorkflow(limits: EvictionLimits): Promise<EvictionPlan> {
  // Exact states (queried, with pending commands), not visibility's eventually consistent view:
  // a second run right after this one sees the stops and undeploys it asked for.
  const plan = planEviction(await deployedBuilds(), limits);
  for (const name of plan.stop) await getExternalWorkflowHandle(buildWorkflowId(name)).signal(stopSignal);
  for (const name of plan.undeploy)
    await getExternalWorkflowHandle(buildWorkflowId(name)).signal(undeploySignal);
  if (plan.stop.length || plan.undeploy.length) log.info('evicting builds', { ...plan });
  return plan;
}
