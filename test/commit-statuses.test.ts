import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import type { BuildStatus, CommitInfo } from '../common/types';
import { startReportingStack, statesInTurn, type ReportingStack, type RecordedCall } from './github-recorder';
import { SHA, waitFor, untilBuildStatus } from './helpers';

// Commit statuses, read back from a local server that records what GitHub would receive.

let reporting: ReportingStack;
let { github, stack, config, cluster } = {} as ReportingStack;
beforeAll(async () => ({ github, stack, config, cluster } = reporting = await startReportingStack()));
afterAll(() => reporting?.close());

const commit = (sha: string): CommitInfo => ({
  repo: 'oca/stock-logistics',
  target_branch: '16.0',
  pr: 3,
  git_commit: SHA(sha),
});
const reach = (name: string, status: BuildStatus) => untilBuildStatus(stack.temporal.client, name, status);
const statusesOf = (sha: string) =>
  github.calls.filter((call) => call.path === `/repos/oca/stock-logistics/statuses/${SHA(sha)}`);

const statesOf = (sha: string) =>
  statesInTurn(statusesOf(sha).map((call) => (call.body as { state: string }).state));

describe('commit statuses', () => {
  it('posts pending on deploy and on init start, then success, linking to the live build', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('a'));
    await waitFor('a pending status', async () => statusesOf('a').length > 0);
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build.name, 'started');
    await waitFor('the success status', async () => statesOf('a').includes('success'));
    // A status still queued when the next comes is replaced by it: one or two pending are posted.
    expect(statesOf('a')).toEqual(['pending', 'success']);
    const calls = statusesOf('a');
    for (const call of calls.slice(0, -1))
      expect(['deployed, waiting to initialize', 'initializing']).toContain(
        (call.body as { description: string }).description,
      );
    for (const call of calls) {
      expect(call.method).toBe('POST');
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
    await waitFor('the failure status', async () => statesOf('b').includes('failure'));
    expect(statesOf('b')).toEqual(['pending', 'failure']);
  });

  it('never holds up a build while GitHub fails, and posts its status once GitHub answers again', async () => {
    const path = `/repos/oca/stock-logistics/statuses/${SHA('c')}`;
    const success = (call: RecordedCall) => (call.body as { state: string }).state === 'success';
    github.answerNext(
      1,
      { status: 502, body: { message: 'Server Error' } },
      (call) => call.path === path && success(call),
    );
    const build = await startBuild(stack.temporal.client, config, commit('c'));
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build.name, 'started');
    await waitFor('the success status', async () => statusesOf('c').filter(success).length === 2);
    const [refused, posted] = statusesOf('c').filter(success);
    expect([refused.status, posted.status]).toEqual([502, 201]);
    // Asked again only after the reporter's first wait for an unavailable GitHub (5 s).
    expect(posted.at - refused.at).toBeGreaterThanOrEqual(5_000);
    expect(statesOf('c')).toEqual(['pending', 'success']);
  });
});
