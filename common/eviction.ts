import type { BuildSnapshot, BuildStatus } from './types';

// Which builds the eviction schedule stops and undeploys, decided from exact build states.
// Pure, so that it is tested without a cluster and replays without surprises.

export interface EvictionLimits {
  maxStarted: number;
  maxDeployed: number;
}

export interface EvictionPlan {
  stop: string[];
  undeploy: string[];
}

/** The status a build is heading to once its pending commands are applied. */
function effectiveStatus(build: BuildSnapshot): BuildStatus {
  if (build.pending_commands.includes('undeploy')) return 'undeploying';
  const lastStartStop = [...build.pending_commands].reverse().find((c) => c === 'start' || c === 'stop');
  if (lastStartStop === 'stop' && (build.status === 'started' || build.status === 'starting'))
    return 'stopping';
  return build.status;
}

const scaledAt = (build: BuildSnapshot) => build.last_scaled ?? build.created;
const byScaledLongestAgo = (a: BuildSnapshot, b: BuildSnapshot) => scaledAt(a).localeCompare(scaledAt(b));

export function planEviction(builds: BuildSnapshot[], limits: EvictionLimits): EvictionPlan {
  const status = new Map(builds.map((build) => [build.name, effectiveStatus(build)]));

  const running = builds.filter((b) => status.get(b.name) === 'started' || status.get(b.name) === 'starting');
  const stop = running
    .sort(byScaledLongestAgo)
    .slice(0, Math.max(0, running.length - limits.maxStarted))
    .map((b) => b.name);
  for (const name of stop) status.set(name, 'stopping');

  const deployed = builds.filter((b) => status.get(b.name) !== 'undeploying');
  const newestOfBranch = new Set(newestBranchBuilds(builds));
  const undeploy = deployed
    .filter((b) => ['stopped', 'stopping', 'failed'].includes(status.get(b.name) as string))
    .filter((b) => !newestOfBranch.has(b.name))
    .sort(byScaledLongestAgo)
    .slice(0, Math.max(0, deployed.length - limits.maxDeployed))
    .map((b) => b.name);
  return { stop, undeploy };
}

/** The most recently created build of each branch; PR builds have no such protection. */
function newestBranchBuilds(builds: BuildSnapshot[]): string[] {
  const newest = new Map<string, BuildSnapshot>();
  for (const build of builds) {
    if (build.commit.pr !== null) continue;
    const branch = `${build.commit.repo}\n${build.commit.target_branch}`;
    const current = newest.get(branch);
    if (!current || build.created > current.created) newest.set(branch, build);
  }
  return [...newest.values()].map((b) => b.name);
}
