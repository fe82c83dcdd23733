import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import type { BuildStatus, CommitInfo } from '../common/types';
import { reportingTo, startGitHubRecorder, type GitHubRecorder } from './github-recorder';
import { startStack, type TestStack } from './api-server';
import { SHA, TestCluster, testConfig, waitFor, untilBuildStatus } from './helpers';

// Commit statuses, read back from a local server that records what GitHub would receive.

let github: GitHubRecorder;
let stack: TestStack;
let config: ReturnType<typeof testConfig>;
let cluster: TestCluster;

beforeAll(async () => {
  github = await startGitHubRecorder();
  config = reportingTo(github);
  cluster = new TestCluster(config.buildNamespace);
  stack = await startStack(config, cluster);
});

afterAll(async () => {
  await stack?.close();
  await github?.close();
});

const commit = (sha: string): CommitInfo => ({
  repo: 'oca/stock-logistics',
  target_branch: '16.0',
  pr: 3,
  git_commit: SHA(sha),
});
const reach = (name: string, status: BuildStatus) => untilBuildStatus(stack.temporal.client, name, status);
const statusesOf = (sha: string) =>
  github.calls.filter((call) => call.path === `/repos/oca/stock-logistics/statuses/${SHA(sha)}`);

describe('commit statuses', () => {
  it('posts pending on deploy and on init start, then success, linking to the live build', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('a'));
    await waitFor('two pending statuses', async () => statusesOf('a').length === 2);
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build.name, 'started');
    const calls = statusesOf('a');
    expect(calls.map((c) => c.method)).toEqual(['POST', 'POST', 'POST']);
    expect(calls.map((c) => (c.body as { state: string }).state)).toEqual(['pending', 'pending', 'success']);
    for (const call of calls) {
      expect(call.body).toMatchObject({
        context: 'runboat/build',
        target_url: `https://runboat.example.org/builds/${build.name}?live`,
      });
      expect(call.authorization).toBe('token test-token');
    }
  });

  it('posts failure when the init fails', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('b'));
    await cluster.finishJob(build.name, 'initialize', false);
    await reach(build.name, 'failed');
    await waitFor('the failure status', async () => statusesOf('b').length === 3);
    expect(statusesOf('b').map((c) => (c.body as { state: string }).state)).toEqual([
      'pending',
      'pending',
      'failure',
    ]);
  });

  it('never fails a build when GitHub refuses the status', async () => {
    github.route('POST', `/repos/oca/stock-logistics/statuses/${SHA('c')}`, 500, { message: 'boom' });
    const build = await startBuild(stack.temporal.client, config, commit('c'));
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build.name, 'started');
    expect(statusesOf('c').length).toBeGreaterThanOrEqual(3);
  });
});
