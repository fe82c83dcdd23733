import { describe, expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import { REPO_INDEX_MAX_AGE_MS } from '../api/repo-index';
import type { BuildRef, CommitInfo } from '../common/types';
import { startTestApi, useStack, type TestApi } from './api-server';
import { consistently, SHA, testConfig, waitFor } from './helpers';

// `GET /api/v1/repos` comes from each API process's index of the builds' repos
// (api/repo-index.ts), listed once and then kept current from the change feed. Here, builds
// added and undeployed after an index was first listed show in its answers (within its bound:
// the waits are for a condition, not a time), in two API apps alike, and as a fresh list gives.

const config = testConfig({ RUNBOAT_NO_CLEANUP_JOB: 'true', RUNBOAT_API_ADMIN_PASSWD: 'admin' });
const stack = useStack(config);

const commit = (repo: string, pr: number | null, sha: string): CommitInfo => ({
  repo,
  target_branch: '16.0',
  pr,
  git_commit: SHA(sha),
});

async function repos(api: TestApi): Promise<string[]> {
  const response = await api.request('GET', '/api/v1/repos');
  expect(response.status).toBe(200);
  const list = (await response.json()) as Array<{ name: string; link: string }>;
  // runboat's JSON: a name and its GitHub link.
  for (const repo of list) expect(repo.link).toBe(`https://github.com/${repo.name}`);
  return list.map((repo) => repo.name);
}

/** Waits until every API answers `expected`; says their last answers otherwise. */
async function untilRepos(apis: TestApi[], expected: string[]): Promise<void> {
  let last: string[][] = [];
  await waitFor(`/repos to be ${JSON.stringify(expected)}`, async () => {
    last = await Promise.all(apis.map(repos));
    return last.every((answer) => JSON.stringify(answer) === JSON.stringify(expected));
  }).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}; last answers ${JSON.stringify(last)}`);
  });
}

const undeploy = async (build: BuildRef) => {
  const response = await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true });
  expect(response.status).toBe(200);
};

describe('/repos', () => {
  it('follows builds added, undeployed and deployed again, in every API, as a fresh list does', async () => {
    const other = await startTestApi(config, stack.temporal.client, stack.cluster);
    try {
      // Both indexes are listed now, while the task queue has no build.
      expect(await repos(stack.api)).toEqual([]);
      expect(await repos(other)).toEqual([]);

      const alpha = await startBuild(stack.temporal.client, config, commit('OCA/Alpha', null, '1'));
      const beta = await startBuild(stack.temporal.client, config, commit('oca/beta', 3, '2'));
      const beta2 = await startBuild(stack.temporal.client, config, commit('oca/beta', 4, '3'));
      await untilRepos([stack.api, other], ['oca/alpha', 'oca/beta']);

      // A repo stays while one of its builds runs: once visibility lists beta as ended, for
      // longer than the index's maximum age (so past a read of the feed that holds the end)...
      await undeploy(beta);
      await waitFor('beta ended, as visibility lists it', async () => {
        const listed = (await (
          await stack.api.request('GET', '/api/v1/builds?repo=oca/beta')
        ).json()) as Array<{ name: string }>;
        return listed.length === 1 && listed[0].name === beta2.name;
      });
      await consistently(
        'oca/beta listed while beta2 runs',
        async () =>
          (await repos(stack.api)).includes('oca/beta') && (await repos(other)).includes('oca/beta'),
        2 * REPO_INDEX_MAX_AGE_MS + 1_000,
      );
      // ...and goes with the last.
      await undeploy(beta2);
      await undeploy(alpha);
      await untilRepos([stack.api, other], []);

      // Deployed again under the same name (a new run of the same workflow): listed again,
      // though its previous run's end is in the same stretch of the change feed.
      await startBuild(stack.temporal.client, config, commit('oca/beta', 3, '2'));
      await untilRepos([stack.api, other], ['oca/beta']);

      // An API listing every build now gives the same answer.
      const fresh = await startTestApi(config, stack.temporal.client, stack.cluster);
      try {
        expect(await repos(fresh)).toEqual(['oca/beta']);
      } finally {
        await fresh.close();
      }
    } finally {
      await other.close();
    }
  });
});
