import { BUILD_STATUSES, type BuildSnapshot, type BuildState, type BuildStatus } from './types';

// Which builds the eviction schedule stops and undeploys, decided from exact build states.
// Pure (`selectEviction` is given its I/O), so that it is tested without a cluster and
// replays without surprises.

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

/** `untouchable`: builds counted as they are but never chosen (their state could not be checked). */
export function planEviction(
  builds: BuildSnapshot[],
  limits: EvictionLimits,
  untouchable: ReadonlySet<string> = new Set(),
): EvictionPlan {
  const status = new Map(builds.map((build) => [build.name, effectiveStatus(build)]));
  const touchable = (b: BuildSnapshot) => !untouchable.has(b.name);

  const running = builds.filter((b) => status.get(b.name) === 'started' || status.get(b.name) === 'starting');
  const stop = running
    .filter(touchable)
    .sort(byScaledLongestAgo)
    .slice(0, Math.max(0, running.length - limits.maxStarted))
    .map((b) => b.name);
  for (const name of stop) status.set(name, 'stopping');

  const deployed = builds.filter((b) => status.get(b.name) !== 'undeploying');
  const newestOfBranch = new Set(newestBranchBuilds(builds));
  const undeploy = deployed
    .filter(touchable)
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

/** What `selectEviction` reads: Temporal visibility for candidates, a build's query for its exact state. */
export interface EvictionSource {
  /** How many running builds visibility lists with one of `statuses`. */
  count(statuses: readonly BuildStatus[]): Promise<number>;
  /** The running builds visibility lists (with one of `statuses`, when given). */
  list(statuses?: readonly BuildStatus[]): Promise<BuildState[]>;
  /** The exact state of a build, from its workflow; undefined when the workflow is gone. */
  query(name: string): Promise<BuildSnapshot | undefined>;
}

export interface EvictionSelection extends EvictionPlan {
  /** Builds whose exact state was queried. */
  queried: number;
  /** Builds left alone because their query failed, with why. */
  skipped: Array<{ name: string; error: string }>;
}

const RUNNING: readonly BuildStatus[] = ['started', 'starting'];
/** Deployed means any status but undeploying (SPEC §3). */
const DEPLOYED: readonly BuildStatus[] = BUILD_STATUSES.filter((status) => status !== 'undeploying');
const QUERY_CONCURRENCY = 8;

/**
 * The plan of `planEviction`, at the cost of two counts when within the limits, and otherwise
 * of one visibility listing plus a query per build it acts on (and per candidate visibility
 * showed stale): candidates come from visibility's search attributes; every build in the plan
 * has had its exact state queried, and the plan is made again with it until that holds. A
 * build whose query fails is skipped (counted, never acted on), not a reason to stop.
 */
export async function selectEviction(
  source: EvictionSource,
  limits: EvictionLimits,
): Promise<EvictionSelection> {
  const [running, deployed] = await Promise.all([source.count(RUNNING), source.count(DEPLOYED)]);
  const selection: EvictionSelection = { stop: [], undeploy: [], queried: 0, skipped: [] };
  if (running <= limits.maxStarted && deployed <= limits.maxDeployed) return selection;
  // Over max_deployed, undeploying needs every build (the newest of each branch is kept);
  // over max_started only, the running ones are enough.
  const listed = await source.list(deployed > limits.maxDeployed ? undefined : RUNNING);
  const exact = new Map<string, BuildSnapshot | undefined>();
  const untouchable = new Set<string>();
  for (;;) {
    const builds = listed.flatMap((build) => {
      if (!exact.has(build.name)) return [{ ...build, pending_commands: [] }];
      const snapshot = exact.get(build.name);
      return snapshot ? [snapshot] : [];
    });
    const plan = planEviction(builds, limits, untouchable);
    const unchecked = [...new Set([...plan.stop, ...plan.undeploy])].filter((name) => !exact.has(name));
    if (unchecked.length === 0) return { ...selection, ...plan };
    for (let i = 0; i < unchecked.length; i += QUERY_CONCURRENCY) {
      await Promise.all(
        unchecked.slice(i, i + QUERY_CONCURRENCY).map(async (name) => {
          selection.queried++;
          try {
            exact.set(name, await source.query(name));
          } catch (error) {
            untouchable.add(name);
            // Counted from visibility, but never acted on without its exact state.
            exact.set(name, { ...listed.find((b) => b.name === name)!, pending_commands: [] });
            selection.skipped.push({ name, error: String(error) });
          }
        }),
      );
    }
  }
}
