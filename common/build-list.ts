import type { Client } from '@temporalio/client';
import type { Config } from './config';
import {
  buildFromSearchAttributes,
  buildWorkflowsQuery,
  runningBuildsQuery,
  searchAttributes,
  visibilityString,
  type ListedBuild,
} from './search-attributes';
import type { BuildStatus } from './types';

/**
 * Which builds to list. runboat's filters (`branch` means builds of that branch itself, not of
 * its PRs), plus what eviction (`statuses`) and wake on visit (`slug`) look builds up by.
 */
export interface BuildFilter {
  repo?: string;
  target_branch?: string;
  branch?: string;
  pr?: number;
  status?: BuildStatus;
  statuses?: readonly BuildStatus[];
  name?: string;
  slug?: string;
  /** The commit built (a 40-digit sha). */
  commit?: string;
}

/** Whether `build` passes `filter`: what `listRunningBuilds` asks visibility, for a build in hand. */
export function matches(filter: BuildFilter, build: ListedBuild): boolean {
  const { repo, target_branch, pr } = build.commit;
  return (
    (!filter.repo || repo === filter.repo.toLowerCase()) &&
    (!filter.target_branch || target_branch === filter.target_branch) &&
    (!filter.branch || (target_branch === filter.branch && pr === null)) &&
    (filter.pr === undefined || pr === filter.pr) &&
    (!filter.status || build.status === filter.status) &&
    (!filter.statuses || filter.statuses.includes(build.status)) &&
    (!filter.name || build.name === filter.name) &&
    (!filter.slug || build.slug === filter.slug) &&
    (!filter.commit || build.commit.git_commit === filter.commit)
  );
}

/**
 * `filter` as visibility clauses: `fixed` on what a build keeps for life (the same in every run
 * of its workflow), `changing` on its status. Values are validated by callers; quoted all the same.
 */
function filterClauses(filter: BuildFilter): { fixed: string[]; changing: string[] } {
  const { name, slug, repo, targetBranch, pr, status, commit } = searchAttributes;
  const fixed: string[] = [];
  if (filter.repo) fixed.push(`${repo.name} = ${visibilityString(filter.repo.toLowerCase())}`);
  if (filter.target_branch) fixed.push(`${targetBranch.name} = ${visibilityString(filter.target_branch)}`);
  if (filter.branch)
    fixed.push(`${targetBranch.name} = ${visibilityString(filter.branch)}`, `${pr.name} IS NULL`);
  if (filter.pr !== undefined) fixed.push(`${pr.name} = ${Math.trunc(filter.pr)}`);
  if (filter.name) fixed.push(`${name.name} = ${visibilityString(filter.name)}`);
  if (filter.slug) fixed.push(`${slug.name} = ${visibilityString(filter.slug)}`);
  if (filter.commit) fixed.push(`${commit.name} = ${visibilityString(filter.commit)}`);
  const changing: string[] = [];
  if (filter.status) changing.push(`${status.name} = ${visibilityString(filter.status)}`);
  if (filter.statuses)
    changing.push(`${status.name} IN (${filter.statuses.map((s) => visibilityString(s)).join(', ')})`);
  return { fixed, changing };
}

/**
 * How long a build's runs may take to show in visibility as they are: a run that continued as
 * new is listed as closed before (or after) the run that goes on is listed as running.
 */
const CONTINUE_AS_NEW_RECORDING_MS = 60_000;

/**
 * The running builds of `taskQueue` that match `filter`, one per build.
 *
 * A build continuing as new (as it does at rest) is, for a moment, two rows in visibility: its
 * old run closed as ContinuedAsNew, or still running, and its new run, running or not recorded
 * yet. It is listed once, as its newest recorded run has it, and listed all the same when that
 * run is the one that continued as new. So rows closed or started within the last minute are
 * read too, whatever their status: the newest run of a build decides, not the newest run that
 * matches (a build started since it continued as new is not `stopped` any more).
 */
export async function listRunningBuilds(
  client: Client,
  taskQueue: string,
  filter: BuildFilter = {},
): Promise<ListedBuild[]> {
  const { fixed, changing } = filterClauses(filter);
  const since = visibilityString(new Date(Date.now() - CONTINUE_AS_NEW_RECORDING_MS).toISOString());
  const running = ["ExecutionStatus = 'Running'", ...changing].join(' AND ');
  const query = [
    buildWorkflowsQuery(taskQueue),
    ...fixed,
    `((${running}) OR StartTime >= ${since} OR CloseTime >= ${since})`,
  ].join(' AND ');
  const live = new Set(['RUNNING', 'CONTINUED_AS_NEW']);
  return (await newestRunPerBuild(client, query))
    .filter(({ status, build }) => live.has(status) && matches(filter, build))
    .map(({ build }) => build);
}

/**
 * The builds of `taskQueue` that match `filter`'s fixed fields (not its statuses), running or
 * ended, one per build, as its newest run has it.
 */
export async function listBuildsRunningOrEnded(
  client: Client,
  taskQueue: string,
  filter: Omit<BuildFilter, 'status' | 'statuses'>,
): Promise<ListedBuild[]> {
  return listNewestRows(
    client,
    [buildWorkflowsQuery(taskQueue), ...filterClauses(filter).fixed].join(' AND '),
  );
}

/** The builds of the workflows `query` lists, one per build, as its newest listed run has it. */
export async function listNewestRows(client: Client, query: string): Promise<ListedBuild[]> {
  return (await newestRunPerBuild(client, query)).map(({ build }) => build);
}

/** Each build `query` lists, as its newest listed run (by start time) has it, with that run's status. */
async function newestRunPerBuild(
  client: Client,
  query: string,
): Promise<{ build: ListedBuild; status: string; started: number }[]> {
  const newest = new Map<string, { build: ListedBuild; status: string; started: number }>();
  for await (const workflow of client.workflow.list({ query })) {
    const build = buildFromSearchAttributes(workflow.typedSearchAttributes);
    const started = workflow.startTime.getTime();
    if (build && !(started < (newest.get(build.name)?.started ?? -Infinity)))
      newest.set(build.name, { build, status: workflow.status.name, started });
  }
  return [...newest.values()];
}

/**
 * Running build workflows of this deployment's task queue that match `filter`, in runboat's
 * ascending order (see `runboatOrder`), the order of `/build-events`' first events.
 */
export async function listBuilds(
  client: Client,
  config: Config,
  filter: BuildFilter = {},
): Promise<ListedBuild[]> {
  return runboatOrder(await listRunningBuilds(client, config.taskQueue, filter), 'asc');
}

/**
 * How a build workflow ends: undeployed, it completes; the others come of an operator or a
 * fault. SQL visibility finds the rows of one status closed since a time from its status index,
 * but for `!= 'Running'` (or an `IN`, or an `OR`, of these) the dev server's SQLite walks every
 * row of the task queue, running ones included: 25–35 ms a read at 20,000 builds, against 2–4
 * ms for one status (`npm run bench:feed`). And each query is one more for the server: reads
 * ask for the undeployed builds by their status, and late reads (every 10 s at most) for the
 * others in one query, walk and all.
 */
const UNDEPLOYED = `ExecutionStatus = 'Completed'`;
const OTHERWISE_ENDED = `ExecutionStatus IN ('Terminated', 'Failed', 'Canceled', 'TimedOut')`;

/**
 * What changed since `since`: the running builds whose listed fields changed (`RunboatUpdated`),
 * and the builds whose workflow ended (undeployed, terminated; a continue-as-new goes on as
 * the same build), those ended otherwise than by an undeploy only when `everyEnding`. An answer
 * proportional to the changes, not to the builds deployed.
 */
export async function listBuildChanges(
  client: Client,
  config: Config,
  since: Date,
  everyEnding: boolean,
  /** Changes from this time on are left out (a late read's: the reads beside it list them). */
  until?: Date,
): Promise<{ changed: ListedBuild[]; ended: ListedBuild[] }> {
  const closed = [`CloseTime >= ${visibilityString(since.toISOString())}`];
  const updated = [`${searchAttributes.updated.name} >= ${since.getTime()}`];
  if (until) {
    closed.push(`CloseTime < ${visibilityString(until.toISOString())}`);
    updated.push(`${searchAttributes.updated.name} < ${until.getTime()}`);
  }
  const endings = everyEnding ? [UNDEPLOYED, OTHERWISE_ENDED] : [UNDEPLOYED];
  // One query after the other: queries at once are a burst against the namespace's visibility
  // rate limit (build-index.ts), and each refused one waits 1.7 s for the client's retry.
  const changed = await listNewestRows(
    client,
    [runningBuildsQuery(config.taskQueue), ...updated].join(' AND '),
  );
  // A build ended twice in the window (redeployed, then ended again) is gone once.
  const ended = new Map<string, ListedBuild>();
  for (const ending of endings) {
    const query = [buildWorkflowsQuery(config.taskQueue), ending, ...closed].join(' AND ');
    for (const build of await listNewestRows(client, query)) ended.set(build.name, build);
  }
  return { changed, ended: [...ended.values()] };
}

/**
 * runboat's `BuildsDb.search` order: by repo, then pull request number with branch builds
 * after every PR (`COALESCE(pr, 999999)`), then target branch, then creation; `asc` is what
 * `/build-events` replays, `desc` what `GET /builds` lists (branches first, newest first).
 * Strings compare by code unit, as SQLite's default BINARY collation does for ASCII.
 */
export function runboatOrder(builds: ListedBuild[], direction: 'asc' | 'desc'): ListedBuild[] {
  const sign = direction === 'asc' ? 1 : -1;
  const compare = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);
  return [...builds].sort(
    (a, b) =>
      sign *
      (compare(a.commit.repo, b.commit.repo) ||
        compare(a.commit.pr ?? 999_999, b.commit.pr ?? 999_999) ||
        compare(a.commit.target_branch, b.commit.target_branch) ||
        compare(Date.parse(a.created), Date.parse(b.created))),
  );
}
