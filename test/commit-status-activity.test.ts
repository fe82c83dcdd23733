import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it, vi } from 'vitest';
import { createActivities } from '../activities';
import { gitHubRefusal, UnexpectedGitHubResponse, type GitHub } from '../common/github';
import {
  inDeliveryOrder,
  reportsWithin,
  waitAfterRefusal,
  type GitHubReport,
} from '../common/github-reports';
import type { BuildCluster } from '../common/kubernetes';
import { buildRef } from '../common/build';
import { SHA, testConfig } from './helpers';

// The activities alone: nothing of Kubernetes or Temporal is involved in these decisions.

const build = buildRef({ repo: 'oca/web', target_branch: '16.0', pr: null, git_commit: SHA('f') });

function activitiesWith(env: Record<string, string>, postCommitStatus = vi.fn(async () => undefined)) {
  const github = { postCommitStatus };
  const queued: GitHubReport[][] = [];
  const activities = createActivities(
    testConfig(env),
    {} as BuildCluster,
    github as unknown as GitHub,
    async (reports) => void queued.push(reports),
  );
  return { activities, github, queued };
}

/** Shaped as Octokit's RequestError (test/github-reports.test.ts has real ones, from loopback). */
const refusal = (status: number, headers: Record<string, string> = {}, message = 'refused') =>
  Object.assign(new Error(message), { status, response: { status, headers, data: {} } });

describe('reportCommitStatus', () => {
  it('queues nothing when RUNBOAT_DISABLE_COMMIT_STATUSES is set and deployments are off', async () => {
    const { activities, queued } = activitiesWith({ RUNBOAT_DISABLE_COMMIT_STATUSES: 'true' });
    await activities.reportCommitStatus(build, 'pending', 'initializing');
    await activities.reportUndeployed(build);
    expect(queued).toEqual([]);
  });

  it('queues the commit status and the deployment status of the step in one signal', async () => {
    const { activities, queued } = activitiesWith({
      RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
      RUNBOAT_GITHUB_DEPLOYMENTS: 'true',
    });
    await activities.reportCommitStatus(build, 'success', 'ready');
    await activities.reportUndeployed(build);
    // What the reports need of the build, no more: the reporter may carry thousands.
    const reported = { name: build.name, commit: build.commit };
    expect(queued).toEqual([
      [
        { build: reported, target: 'status', state: 'success', description: 'ready' },
        { build: reported, target: 'deployment', state: 'success', description: 'ready' },
      ],
      [{ build: reported, target: 'deployment', state: 'inactive', description: 'undeployed' }],
    ]);
  });
});

describe('deliverGitHubReports', () => {
  const report = (state: GitHubReport['state']): GitHubReport => ({
    build,
    target: 'status',
    state,
    description: state,
  });

  it('links the status to the live build under RUNBOAT_BASE_URL', async () => {
    const { activities, github } = activitiesWith({
      RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
      RUNBOAT_BASE_URL: 'https://runboat.example.org/',
    });
    const delivery = await new MockActivityEnvironment().run(activities.deliverGitHubReports, [
      report('success'),
    ]);
    expect(delivery).toEqual({ done: 1 });
    expect(github.postCommitStatus).toHaveBeenCalledWith(build.commit, {
      state: 'success',
      description: 'success',
      targetUrl: `https://runboat.example.org/builds/${build.name}?live`,
    });
  });

  it("stops at GitHub's rate limit, and drops what GitHub refuses for good", async () => {
    const answers = [refusal(422), undefined, refusal(403, { 'retry-after': '30' }), undefined];
    const { activities, github } = activitiesWith(
      {},
      vi.fn(async () => {
        const answer = answers.shift();
        if (answer) throw answer;
      }),
    );
    const delivery = await new MockActivityEnvironment().run(activities.deliverGitHubReports, [
      report('pending'),
      report('success'),
      report('failure'),
      report('error'),
    ]);
    expect(delivery).toEqual({ done: 2, refusal: { kind: 'rate-limited', retryAfterMs: 30_000 } });
    expect(github.postCommitStatus).toHaveBeenCalledTimes(3);
  });
});

describe("GitHub's refusals", () => {
  it('tells a rate limit, with the wait GitHub asks for, from an outage and from a refusal for good', () => {
    const now = Date.parse('2026-12-05T00:00:00Z');
    expect(gitHubRefusal(refusal(403, { 'retry-after': '7' }), now)).toEqual({
      kind: 'rate-limited',
      retryAfterMs: 7_000,
    });
    const reset = `${now / 1000 + 90}`;
    expect(
      gitHubRefusal(refusal(403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset }), now),
    ).toEqual({ kind: 'rate-limited', retryAfterMs: 90_000 });
    expect(gitHubRefusal(refusal(403, {}, 'You have exceeded a secondary rate limit'), now)).toEqual({
      kind: 'rate-limited',
    });
    expect(gitHubRefusal(refusal(429), now)).toEqual({ kind: 'rate-limited' });
    expect(gitHubRefusal(refusal(502), now)).toEqual({ kind: 'unavailable' });
    // Octokit's network errors and timeouts have status 500; an error without one is this side's.
    expect(gitHubRefusal(refusal(500, {}, 'socket hang up'), now)).toEqual({ kind: 'unavailable' });
    expect(gitHubRefusal(new UnexpectedGitHubResponse('deployment id'), now)).toBeUndefined();
    expect(gitHubRefusal(refusal(403, {}, 'Resource not accessible by integration'), now)).toBeUndefined();
    expect(gitHubRefusal(refusal(404), now)).toBeUndefined();
    expect(gitHubRefusal(refusal(422), now)).toBeUndefined();
  });

  it('waits as GitHub asks: its time first, a minute without one, longer at each refusal in a row', () => {
    expect(waitAfterRefusal({ kind: 'rate-limited', retryAfterMs: 7_000 }, 1)).toBe(7_000);
    expect(waitAfterRefusal({ kind: 'rate-limited', retryAfterMs: 7_000 }, 2)).toBe(120_000);
    expect(waitAfterRefusal({ kind: 'rate-limited', retryAfterMs: 600_000 }, 2)).toBe(600_000);
    expect(waitAfterRefusal({ kind: 'rate-limited' }, 1)).toBe(60_000);
    expect(waitAfterRefusal({ kind: 'rate-limited' }, 3)).toBe(240_000);
    expect(waitAfterRefusal({ kind: 'unavailable' }, 1)).toBe(5_000);
    expect(waitAfterRefusal({ kind: 'unavailable' }, 4)).toBe(40_000);
    expect(waitAfterRefusal({ kind: 'unavailable' }, 40)).toBe(3_600_000);
  });
});

describe("the reporter's queue", () => {
  const report = (
    sha: string,
    target: GitHubReport['target'],
    state: GitHubReport['state'],
  ): GitHubReport => ({
    build: buildRef({ ...build.commit, git_commit: SHA(sha) }),
    target,
    state,
    description: state,
  });
  const undeployed = report('1', 'deployment', 'inactive');
  const deployed = report('2', 'deployment', 'success');
  const started = report('3', 'status', 'success');
  const initializing = report('4', 'status', 'pending');

  it('goes commit statuses first, then deployments, then deployments going inactive, each in turn', () => {
    expect(inDeliveryOrder([undeployed, deployed, started, initializing])).toEqual([
      started,
      initializing,
      deployed,
      undeployed,
    ]);
  });

  it('carries over what fits, leaving out the reports that would go last', () => {
    const queue = [started, initializing, deployed, undeployed];
    const size = (reports: GitHubReport[]) =>
      reports.reduce((sum, each) => sum + JSON.stringify(each).length + 1, 0);
    expect(reportsWithin(queue, size(queue))).toEqual({ kept: queue, left: [] });
    expect(reportsWithin(queue, size(queue) - 1)).toEqual({ kept: queue.slice(0, 3), left: [undeployed] });
    expect(reportsWithin(queue, size(queue.slice(0, 2)))).toEqual({
      kept: [started, initializing],
      left: [deployed, undeployed],
    });
    expect(reportsWithin(queue, 0)).toEqual({ kept: [], left: queue });
  });
});
