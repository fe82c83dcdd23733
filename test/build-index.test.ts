import { describe, expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import { FRESH_FOR_MS, LastingDisagreement, type BuildCounts } from '../common/build-index';
import { listBuilds, runboatOrder } from '../common/build-list';
import { statusFromCounts, type BuildJson, type StatusCounts } from '../api/views';
import { BUILD_STATUSES, type BuildRef, type CommitInfo } from '../common/types';
import {
  buildEventPolls as polls,
  buildIndexReads,
  startTestApi,
  useStack,
  type EventStream,
  type TestApi,
} from './api-server';
import { SHA, testConfig, waitFor } from './helpers';

// `GET /api/v1/repos`, `/status` and `/builds` come from each API process's index of the
// builds (common/build-index.ts), listed once and then kept current from the change feed. Here,
// builds added, initialized, undeployed and deployed again after an index was first listed
// show in its answers as in visibility's own lists, in two API apps alike; the waits are for
// those conditions, never for a time.

const config = testConfig({
  RUNBOAT_NO_CLEANUP_JOB: 'true',
  RUNBOAT_API_ADMIN_PASSWD: 'admin',
  RUNBOAT_MAX_INITIALIZING: '3',
});
const stack = useStack(config);

const commit = (repo: string, pr: number | null, sha: string): CommitInfo => ({
  repo,
  target_branch: '16.0',
  pr,
  git_commit: SHA(sha),
});

interface View {
  repos: string[];
  status: StatusCounts;
  /** `GET /api/v1/builds?repo=oca/beta`: its builds' names and statuses, in runboat's order. */
  board: string[];
}

const BOARD = 'oca/beta';
const shown = (builds: Array<{ name: string; status: string }>) => builds.map((b) => `${b.name} ${b.status}`);

async function json<T>(api: TestApi, path: string): Promise<T> {
  const response = await api.request('GET', path);
  expect(response.status, path).toBe(200);
  return (await response.json()) as T;
}

/** What an API's index says. */
async function indexed(api: TestApi): Promise<View> {
  const repos = await json<Array<{ name: string; link: string }>>(api, '/api/v1/repos');
  // runboat's JSON: a name and its GitHub link.
  for (const repo of repos) expect(repo.link).toBe(`https://github.com/${repo.name}`);
  return {
    repos: repos.map((repo) => repo.name),
    status: await json<StatusCounts>(api, '/api/v1/status'),
    board: shown(await json<BuildJson[]>(api, `/api/v1/builds?repo=${BOARD}`)),
  };
}

/** The same, from visibility's list of every build. */
async function listed(): Promise<View> {
  const builds = await listBuilds(stack.temporal.client, config);
  const counts: BuildCounts = {
    statuses: Object.fromEntries(
      BUILD_STATUSES.map((s) => [s, builds.filter((b) => b.status === s).length]),
    ) as BuildCounts['statuses'],
    toInitialize: builds.filter((b) => b.status === 'initializing' && b.init_status === 'todo').length,
    initializing: builds.filter((b) => b.status === 'initializing' && b.init_status === 'started').length,
  };
  return {
    repos: [...new Set(builds.map((b) => b.commit.repo))].sort(),
    status: statusFromCounts(config, counts),
    board: shown(runboatOrder(await listBuilds(stack.temporal.client, config, { repo: BOARD }), 'desc')),
  };
}

/** Waits until every API's index agrees with the list, and the list is as `expected` says. */
async function untilIndexed(apis: TestApi[], what: string, expected: (view: View) => boolean): Promise<void> {
  let last: unknown;
  await waitFor(what, async () => {
    const truth = await listed();
    const views = await Promise.all(apis.map(indexed));
    last = { truth, views };
    return expected(truth) && views.every((view) => JSON.stringify(view) === JSON.stringify(truth));
  }).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}; last seen ${JSON.stringify(last)}`);
  });
}

const undeploy = async (build: BuildRef) => {
  const response = await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true });
  expect(response.status).toBe(200);
};

describe('the build index (/repos, /status)', () => {
  it('follows builds added, initialized, undeployed and deployed again, in every API, as a list does', async () => {
    const other = await startTestApi(config, stack.temporal.client, stack.cluster);
    const apis = [stack.api, other];
    try {
      // Both indexes are listed now, while the task queue has no build.
      for (const api of apis) expect((await indexed(api)).repos).toEqual([]);

      const alpha = await startBuild(stack.temporal.client, config, commit('OCA/Alpha', null, '1'));
      const beta = await startBuild(stack.temporal.client, config, commit('oca/beta', 3, '2'));
      const beta2 = await startBuild(stack.temporal.client, config, commit('oca/beta', 4, '3'));
      await untilIndexed(
        apis,
        'three builds initializing in two repos',
        ({ repos, status }) =>
          JSON.stringify(repos) === JSON.stringify(['oca/alpha', 'oca/beta']) && status.initializing === 3,
      );

      for (const build of [alpha, beta, beta2]) await stack.cluster.finishJob(build.name, 'initialize', true);
      await untilIndexed(apis, 'three builds started', ({ status }) => status.started === 3);

      // A repo stays while one of its builds runs: asked once the list has beta gone (an
      // answer is as of its request or later)...
      await undeploy(beta);
      await waitFor('beta gone from the list', async () => {
        const { status } = await listed();
        return status.deployed === 2 && status.undeploying === 0;
      });
      for (const api of apis) expect((await indexed(api)).repos).toEqual(['oca/alpha', 'oca/beta']);
      await untilIndexed(
        apis,
        'beta gone',
        ({ status }) => status.deployed === 2 && status.undeploying === 0,
      );
      // ...and goes with the last.
      await undeploy(beta2);
      await undeploy(alpha);
      await untilIndexed(
        apis,
        'every build gone',
        ({ repos, status }) => repos.length === 0 && status.deployed === 0 && status.undeploying === 0,
      );

      // Deployed again under the same name (a new run of the same workflow): indexed again,
      // though its previous run's end is in the same stretch of the change feed.
      await startBuild(stack.temporal.client, config, commit('oca/beta', 3, '2'));
      await untilIndexed(
        apis,
        'beta back, its init started',
        ({ repos, status }) =>
          JSON.stringify(repos) === JSON.stringify(['oca/beta']) && status.initializing === 1,
      );

      // An API listing every build now gives the same answers.
      const fresh = await startTestApi(config, stack.temporal.client, stack.cluster);
      try {
        expect(await indexed(fresh)).toEqual(await indexed(stack.api));
      } finally {
        await fresh.close();
      }
    } finally {
      await other.close();
    }
  });
});

describe('the build index under a crowd of requests', () => {
  // Temporal refuses a namespace's visibility queries past a rate (10 a second per frontend by
  // default), and the client asks again 1.7 s later: a read of the change feed per request put
  // one request in 30 there. Requests and streams share the index's reads, one per interval.
  it('reads the change feed at most once per interval, for requests and streams together', async () => {
    const api = await startTestApi(config, stack.temporal.client, stack.cluster);
    const streams: EventStream[] = [];
    /** Sends 60 requests one after the other: the index's reads, and how many it may make. */
    const crowd = async () => {
      const [from, began] = [await buildIndexReads(api), Date.now()];
      for (let i = 0; i < 60; i++) await json(api, i % 2 ? '/api/v1/status' : `/api/v1/builds?repo=${BOARD}`);
      const reads = (await buildIndexReads(api)) - from;
      return { reads, allowed: Math.ceil((Date.now() - began) / FRESH_FOR_MS) + 2 };
    };
    try {
      await json(api, '/api/v1/status'); // the first list of every build
      const alone = await crowd();
      expect(alone.reads, `requests alone (at most ${alone.allowed})`).toBeLessThanOrEqual(alone.allowed);
      // Streams poll the index once an interval; requests in between add no read of their own.
      streams.push(await api.follow('changes_only=true'), await api.follow(`repo=${BOARD}`));
      const withStreams = await crowd();
      expect(withStreams.reads, `with two streams (at most ${withStreams.allowed})`).toBeLessThanOrEqual(
        withStreams.allowed,
      );
      expect(await polls(api, 'failed')).toBe(0);
    } finally {
      for (const stream of streams) stream.close();
      await api.close();
    }
  });
  it("answers a request made on a stream's event with that change, or a later state", async () => {
    const api = await startTestApi(config, stack.temporal.client, stack.cluster);
    const stream = await api.follow('repo=oca/gamma');
    const board = async () =>
      (await json<BuildJson[]>(api, '/api/v1/builds?repo=oca/gamma')).map((b) => b.name);
    try {
      const gamma = await startBuild(stack.temporal.client, config, commit('oca/gamma', 5, '7'));
      await stream.next('the new build', (event) => event.event === 'upd' && event.build.name === gamma.name);
      expect(await board()).toContain(gamma.name);
      await undeploy(gamma);
      await stream.next('its end', (event) => event.event === 'del' && event.build.name === gamma.name);
      expect(await board()).not.toContain(gamma.name);
    } finally {
      stream.close();
      await api.close();
    }
  });
});

describe('LastingDisagreement (when eviction lists every build again)', () => {
  it('answers true once the same difference outlasts its span, not for differences that move', () => {
    const disagreement = new LastingDisagreement(120_000);
    const check = (indexed: number, now: number) => disagreement.check([indexed, 10], [5, 10], now);
    expect(check(6, 0)).toBe(false);
    expect(check(6, 60_000)).toBe(false);
    // Agreeing once starts over.
    expect(check(5, 90_000)).toBe(false);
    expect(check(6, 100_000)).toBe(false);
    // So does a difference that moved (builds changing while visibility lags).
    expect(check(7, 200_000)).toBe(false);
    expect(check(7, 320_000)).toBe(false);
    expect(check(7, 320_001)).toBe(true);
    // Once answered, a new span begins.
    expect(check(7, 330_000)).toBe(false);
    expect(check(7, 450_001)).toBe(true);
  });
});
