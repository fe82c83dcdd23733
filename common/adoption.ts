import type { V1Deployment } from '@kubernetes/client-node';
import { buildSlug, namesBuildOf, validateCommitInfo } from './build';
import type { BuildState, BuildStatus, CommitInfo, InitStatus } from './types';
import type { BuildPhase } from '../workflows/definitions';

// A build deployed with no workflow: one of runboat's, found in the namespace it hands over, or
// one of this service's whose Temporal history was lost. runboat kept each build's whole state
// on its Deployment (the kubefiles contract's label and annotations, its replicas), which this
// service keeps up to date too: enough to take the build over where it is.

/** Where a workflow takes such a build over, or why none can (its objects are then swept). */
export type Adoption = { state: BuildState; phase: BuildPhase } | { refused: string };

const INIT_STATUSES: readonly InitStatus[] = ['todo', 'started', 'succeeded', 'failed'];

/** The build `deployment` describes, where its workflow takes it over, as runboat read it. */
export function adoptionOf(deployment: V1Deployment): Adoption {
  const { labels = {}, annotations = {}, creationTimestamp, deletionTimestamp } = deployment.metadata ?? {};
  const name = labels['runboat/build'] ?? '';
  const initStatus = annotations['runboat/init-status'] as InitStatus;
  if (!INIT_STATUSES.includes(initStatus))
    return { refused: `runboat/init-status ${JSON.stringify(initStatus ?? null)} is not one of runboat's` };
  const pr = annotations['runboat/pr'] || null;
  let commit: CommitInfo;
  try {
    commit = validateCommitInfo({
      repo: annotations['runboat/repo'] ?? '',
      target_branch: annotations['runboat/target-branch'] ?? '',
      pr: pr === null ? null : Number(pr),
      git_commit: annotations['runboat/git-commit'] ?? '',
    });
  } catch (error) {
    return { refused: `its annotations do not describe a commit: ${(error as Error).message}` };
  }
  if (!namesBuildOf(name, commit))
    return { refused: `${JSON.stringify(name)} is neither runboat's name of a build nor this service's` };
  const created = (creationTimestamp ? new Date(creationTimestamp) : new Date()).toISOString();
  const lastScaled = annotations['runboat/last-scaled'];
  const [status, phase] = statusOf(deployment, initStatus, Boolean(deletionTimestamp));
  return {
    state: {
      name,
      slug: buildSlug(commit),
      commit,
      status,
      // An initialization runboat had under way is started over, as runboat's reset does.
      init_status: phase === 'redeploy' ? 'todo' : initStatus,
      created,
      last_scaled:
        lastScaled && !Number.isNaN(Date.parse(lastScaled)) ? new Date(lastScaled).toISOString() : null,
      last_error: null,
    },
    phase,
  };
}

/** runboat's status of the Deployment (its `_status_from_deployment`), and where to go on from. */
function statusOf(
  deployment: V1Deployment,
  initStatus: InitStatus,
  deleting: boolean,
): [BuildStatus, BuildPhase] {
  if (deleting) return ['undeploying', 'undeploy'];
  if (initStatus === 'todo' || initStatus === 'started') return ['initializing', 'redeploy'];
  if (initStatus === 'failed') return ['failed', 'live'];
  const desired = deployment.spec?.replicas ?? 0;
  if (desired === 0) return [deployment.status?.replicas ? 'stopping' : 'stopped', 'live'];
  return [deployment.status?.availableReplicas === desired ? 'started' : 'starting', 'live'];
}
