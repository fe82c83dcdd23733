import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { adoptionOf } from '../common/adoption';
import { listRunningBuilds } from '../common/build-list';
import { adoptedBuildStart } from '../common/build-start';
import { captureRepoSettings, findRepoSettings, type Config } from '../common/config';
import type { BuildCluster } from '../common/kubernetes';
import type { BuildRepoSettings, BuildState } from '../common/types';
import { buildWorkflowId, type BuildPhase, type BuildWorkflow } from '../workflows/definitions';
import { workflowStates } from './coordination';

// What the orphan sweep does with the builds deployed without a running workflow, decided in
// one place: for the sweep itself, and for `npm run orphans`, which shows it beforehand (a move
// from runboat, say).

export interface AdoptableBuild {
  state: BuildState;
  phase: BuildPhase;
  /** Absent when RUNBOAT_REPOS no longer has the build's repo and branch. */
  repo?: BuildRepoSettings;
}

export interface OrphanPlan {
  /** Builds that never had a workflow here, whose Deployment says where they are. */
  adopt: AdoptableBuild[];
  /** Builds whose objects are to be deleted, and why. */
  sweep: { name: string; reason: string }[];
}

/**
 * The builds with objects `graceSeconds` old or older (a build being created has its workflow
 * before its first object; the grace covers any lag in between) and no running workflow: those
 * whose workflow ended are swept; those whose workflow Temporal does not know at all are adopted
 * when their Deployment describes them (runboat's, or ones whose history Temporal lost), swept
 * otherwise. The builds visibility lists as running are left; each of the others has its
 * workflow looked up by id, as visibility lags (a workflow ended that it still lists is found by
 * the next sweep). Looking every build up took 20 s and 23 s of CPU at 7,000 builds.
 */
export async function planOrphans(
  client: Client,
  config: Config,
  cluster: BuildCluster,
  graceSeconds: number,
): Promise<OrphanPlan> {
  const settled = [...(await cluster.buildsWithObjects())]
    .filter(([, newest]) => Date.now() - newest.getTime() >= graceSeconds * 1000)
    .map(([name]) => name);
  const listed = new Set((await listRunningBuilds(client, config.taskQueue)).map((build) => build.name));
  const unlisted = settled.filter((name) => !listed.has(name));
  const workflows = await workflowStates(client, unlisted.map(buildWorkflowId));
  const plan: OrphanPlan = { adopt: [], sweep: [] };
  for (const name of unlisted) {
    const workflow = workflows.get(buildWorkflowId(name));
    if (workflow === 'running') continue;
    if (workflow === 'ended') {
      plan.sweep.push({ name, reason: 'its workflow ended' });
      continue;
    }
    const found = await cluster.deploymentsOf(name);
    const adoption =
      found.length === 1 ? adoptionOf(found[0]) : { refused: `it has ${found.length} Deployments, not one` };
    if ('refused' in adoption) {
      plan.sweep.push({ name, reason: `no workflow, and not adoptable: ${adoption.refused}` });
      continue;
    }
    const { repo, target_branch } = adoption.state.commit;
    // A repo or branch no longer configured is adopted all the same, as such builds of release
    // v1 run: the build is counted and evicted, and its undeploy skips the cleanup it cannot render.
    const entry = findRepoSettings(config, repo, target_branch);
    plan.adopt.push({ ...adoption, ...(entry ? { repo: captureRepoSettings(entry) } : {}) });
  }
  return plan;
}

/** Starts the workflow that takes `build` over; false when one was started for it meanwhile. */
export async function adoptBuild(client: Client, config: Config, build: AdoptableBuild): Promise<boolean> {
  try {
    await client.workflow.start<BuildWorkflow>(
      'buildWorkflow',
      adoptedBuildStart(config, build.state, build.phase, build.repo),
    );
    return true;
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) return false;
    throw error;
  }
}
