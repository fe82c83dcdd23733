import {
  BUILD_STATUSES,
  type BuildCommand,
  type BuildSnapshot,
  type BuildState,
  type BuildStatus,
} from './types';

// Which builds the eviction schedule stops and undeploys, decided from exact build states.
// Pure (`evict` is given its I/O), so that it is tested without a cluster and replays without
// surprises; the build workflow checks the orders it is given with `orderStillApplies`.

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

/**
 * Eviction's order to one build, with the state it was decided from: the build takes it only
 * if its exact state (pending commands applied) is still that one (`orderStillApplies`), and
 * otherwise refuses it, answering with that state.
 */
export interface EvictionOrder {
  stop: boolean;
  undeploy: boolean;
  status: BuildStatus;
  last_scaled: string | null;
}

/** Whether `build` is as `order` was decided from: the status it heads to, and when it was scaled. */
export function orderStillApplies(build: BuildSnapshot, order: EvictionOrder): boolean {
  return effectiveStatus(build) === order.status && build.last_scaled === order.last_scaled;
}

/** The commands an order carries, in the order the build receives them. */
export function orderCommands(order: EvictionOrder): BuildCommand[] {
  return [...(order.stop ? ['stop' as const] : []), ...(order.undeploy ? ['undeploy' as const] : [])];
}

/** A build's answer to an order: taken, or refused with its exact state (undefined: gone). */
export type OrderOutcome = { taken: true } | { taken: false; exact: BuildSnapshot | undefined };

/** What `evict` reads and tells: Temporal visibility for candidates, each build for its orders. */
export interface EvictionSource {
  /** How many running builds visibility lists with one of `statuses`. */
  count(statuses: readonly BuildStatus[]): Promise<number>;
  /** The running builds visibility lists (with one of `statuses`, when given). */
  list(statuses?: readonly BuildStatus[]): Promise<BuildState[]>;
  /** Gives `order` to the build `name`. */
  order(name: string, order: EvictionOrder): Promise<OrderOutcome>;
}

export interface EvictionSelection extends EvictionPlan {
  /** Orders given, taken or not. */
  ordered: number;
  /** Builds left alone because giving them an order failed, with why. */
  skipped: Array<{ name: string; error: string }>;
  /** Time spent listing candidates, and giving orders, in ms. */
  listMs: number;
  orderMs: number;
}

export const RUNNING: readonly BuildStatus[] = ['started', 'starting'];
/** Deployed means any status but undeploying (SPEC §3). */
export const DEPLOYED: readonly BuildStatus[] = BUILD_STATUSES.filter((status) => status !== 'undeploying');
/**
 * Orders given at once. A build's workflow takes one in a workflow task, a replay of its history
 * when the worker no longer holds it: more at once keeps the worker busy, not waiting.
 */
const ORDER_CONCURRENCY = 32;
/** A build that refused this many orders (it keeps changing) is left for the next run. */
const REFUSALS_BEFORE_LEFT = 2;

/**
 * Stops and undeploys what `planEviction` would on the builds' exact states, at the cost of two
 * counts when within the limits, and otherwise of one visibility listing plus an order per build
 * acted on (and per build visibility showed stale): candidates come from visibility's search
 * attributes; each build takes its order only if its exact state is the one the plan was made
 * from, and otherwise answers with that state, from which the plan is made again. A build that
 * cannot be given an order is skipped (counted, never acted on), not a reason to stop. Returns
 * the orders taken.
 */
export async function evict(source: EvictionSource, limits: EvictionLimits): Promise<EvictionSelection> {
  const [running, deployed] = await Promise.all([source.count(RUNNING), source.count(DEPLOYED)]);
  const selection: EvictionSelection = {
    stop: [],
    undeploy: [],
    ordered: 0,
    skipped: [],
    listMs: 0,
    orderMs: 0,
  };
  if (running <= limits.maxStarted && deployed <= limits.maxDeployed) return selection;
  // Over max_deployed, undeploying needs every build (the newest of each branch is kept);
  // over max_started only, the running ones are enough.
  const listStart = Date.now();
  const listed = await source.list(deployed > limits.maxDeployed ? undefined : RUNNING);
  selection.listMs = Date.now() - listStart;
  /** What each build answered or took: its exact state, as far as this run knows it. */
  const known = new Map<string, BuildSnapshot | undefined>();
  const untouchable = new Set<string>();
  const refusals = new Map<string, number>();
  const orderStart = Date.now();
  for (;;) {
    const builds = listed.flatMap((build) => {
      if (!known.has(build.name)) return [{ ...build, pending_commands: [] }];
      const snapshot = known.get(build.name);
      return snapshot ? [snapshot] : [];
    });
    const plan = planEviction(builds, limits, untouchable);
    const [stops, undeploys] = [new Set(plan.stop), new Set(plan.undeploy)];
    const orders = builds.flatMap((build): [BuildSnapshot, EvictionOrder][] => {
      const stop = stops.has(build.name);
      const undeploy = undeploys.has(build.name);
      if (!stop && !undeploy) return [];
      return [[build, { stop, undeploy, status: effectiveStatus(build), last_scaled: build.last_scaled }]];
    });
    if (orders.length === 0) {
      selection.orderMs = Date.now() - orderStart;
      return selection;
    }
    for (let i = 0; i < orders.length; i += ORDER_CONCURRENCY) {
      await Promise.all(
        orders.slice(i, i + ORDER_CONCURRENCY).map(async ([build, order]) => {
          selection.ordered++;
          try {
            const outcome = await source.order(build.name, order);
            if (outcome.taken) {
              if (order.stop) selection.stop.push(build.name);
              if (order.undeploy) selection.undeploy.push(build.name);
              known.set(build.name, {
                ...build,
                pending_commands: [...build.pending_commands, ...orderCommands(order)],
              });
              return;
            }
            known.set(build.name, outcome.exact);
            const refused = (refusals.get(build.name) ?? 0) + 1;
            refusals.set(build.name, refused);
            if (refused >= REFUSALS_BEFORE_LEFT) untouchable.add(build.name);
          } catch (error) {
            // Counted as visibility (or its last answer) shows it, but never acted on.
            untouchable.add(build.name);
            selection.skipped.push({ name: build.name, error: String(error) });
          }
        }),
      );
    }
  }
}
