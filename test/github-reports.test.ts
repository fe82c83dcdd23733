import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signalReporter } from '../activities/github-reports';
import { startBuild } from '../api/build-client';
import { buildRef } from '../common/build';
import type { CommitInfo } from '../common/types';
import type { GitHubReport } from '../common/github-reports';
import {
  githubReportsQuery,
  githubReportsSignal,
  githubReportsWorkflowId,
  type GitHubReportsWorkflow,
} from '../workflows/definitions';
import { startReportingStack, type ReportingStack, type RecordedCall } from './github-recorder';
import { metricSample, scrapeMetrics, type TestStack } from './api-server';
import { replayAndRecord, SHA, untilBuildStatus, waitFor } from './helpers';

// GitHub's rate limits, on loopback: every report of a burst reaches GitHub in the end, none is
// sent while GitHub asks to wait, the writes are spaced, and a build's newest state is the last
// one posted. The queue lives in the reporter's workflow, so a new worker finds it.

const SPACING_MS = 100;

let reporting: ReportingStack;
let { github, stack, config, cluster } = {} as ReportingStack;
/** The stack's worker, which a test replaces. */
let worker: Awaited<ReturnType<TestStack['temporal']['startWorker']>>;
beforeAll(async () => {
  const env = {
    RUNBOAT_GITHUB_WRITES_PER_MINUTE: `${60_000 / SPACING_MS}`,
    RUNBOAT_GITHUB_DEPLOYMENTS: 'false',
    RUNBOAT_MAX_INITIALIZING: '6',
  };
  ({ github, stack, config, cluster } = reporting = await startReportingStack(env, { worker: false }));
  worker = await stack.temporal.startWorker();
});
afterAll(() => reporting?.close());

const commit = (sha: string): CommitInfo => ({
  repo: 'oca/stock-logistics',
  target_branch: '16.0',
  pr: 7,
  git_commit: SHA(sha),
});
const report = (
  sha: string,
  target: GitHubReport['target'] = 'status',
  state: GitHubReport['state'] = 'success',
): GitHubReport => ({ build: buildRef(commit(sha)), target, state, description: state });
const writes = () => github.calls.filter((call) => call.method === 'POST');
const stateOf = (call: RecordedCall) => (call.body as { state: string }).state;
const reporterState = () =>
  stack.temporal.client.workflow
    .getHandle(githubReportsWorkflowId(config.taskQueue))
    .query(githubReportsQuery);

/**
 * The file's reporter replaced by one given `reports` and a short history (30 events), so that
 * the test sees it continue as new.
 */
async function newReporterWith(reports: GitHubReport[]) {
  const { client } = stack.temporal;
  const reporter = client.workflow.getHandle(githubReportsWorkflowId(config.taskQueue));
  await reporter.terminate('replaced by a reporter with a short history').catch((error: unknown) => {
    if (!(error instanceof WorkflowNotFoundError)) throw error; // this test alone
  });
  await client.workflow.signalWithStart<GitHubReportsWorkflow, [GitHubReport[]]>('githubReportsWorkflow', {
    workflowId: reporter.workflowId,
    taskQueue: config.taskQueue,
    args: [{ queued: [], refusals: 0, historyLimit: 30 }],
    signal: githubReportsSignal,
    signalArgs: [reports],
  });
  return reporter;
}

/** GitHub's answer to a token past its secondary rate limit. */
const rateLimited = (retryAfterSeconds: number) => ({
  status: 403,
  body: {
    message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
  },
  headers: { 'retry-after': `${retryAfterSeconds}` },
});

describe('GitHub reports under its rate limit', () => {
  it('posts every build of a burst its final status, waiting as GitHub asks, spaced, newest last', async () => {
    let posts = 0;
    github.answerNext(1, rateLimited(2), (call) => call.method === 'POST' && ++posts === 4);
    // And once GitHub failing on one of them (which then waits on its own).
    let laterPosts = 0;
    github.answerNext(
      1,
      { status: 502, body: { message: 'Server Error' } },
      (call) => call.method === 'POST' && ++laterPosts === 9,
    );
    const builds = await Promise.all(
      ['1', '2', '3', '4', '5', '6'].map((sha) => startBuild(stack.temporal.client, config, commit(sha))),
    );
    for (const build of builds) await cluster.finishJob(build.name, 'initialize', true);
    // GitHub's answers hold up no build.
    for (const build of builds) await untilBuildStatus(stack.temporal.client, build.name, 'started');
    const statusesOf = (sha: string) =>
      writes().filter((call) => call.path === `/repos/oca/stock-logistics/statuses/${SHA(sha)}`);
    await waitFor(
      'every build its success status',
      async () =>
        ['1', '2', '3', '4', '5', '6'].every((sha) =>
          statusesOf(sha).some((call) => call.status === 201 && stateOf(call) === 'success'),
        ),
      60_000,
    );

    const [refused, ...rest] = writes().filter((call) => call.status === 403);
    expect(rest).toEqual([]);
    expect(writes().filter((call) => call.status === 502)).toHaveLength(1);
    // Nothing was sent in the 2 s GitHub asked for.
    const next = writes().find((call) => call.at > refused.at);
    expect(next!.at - refused.at).toBeGreaterThanOrEqual(2_000);
    // One write at a time, spaced: the median gap between arrivals (one write's arrival may lag its
    // sending on a busy machine; unspaced, the writes of a batch arrive a few ms apart).
    const times = writes().map((call) => call.at);
    const gaps = times.slice(1).map((time, at) => time - times[at]);
    expect(gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)]).toBeGreaterThanOrEqual(SPACING_MS - 10);
    // Each build's last status is its newest: the refused one was sent again, none went back.
    for (const sha of ['1', '2', '3', '4', '5', '6']) {
      const posted = statusesOf(sha).filter((call) => call.status === 201);
      expect(posted.map(stateOf).at(-1), sha).toBe('success');
      expect(posted.map(stateOf).indexOf('success'), sha).toBe(posted.length - 1);
    }
    await waitFor('an empty queue', async () => (await reporterState()).queued.length === 0);
  });

  it('keeps the reports GitHub made it wait for across a new worker, and delivers them', async () => {
    const build = buildRef(commit('7'));
    const before = writes().length;
    github.answerNext(1, rateLimited(3), (call) => call.method === 'POST');
    await signalReporter(
      config,
      () => stack.temporal.client,
    )([{ build, target: 'status', state: 'pending', description: 'initializing' }]);
    await waitFor('the reporter waiting', async () => (await reporterState()).waitingUntil !== null);
    const report = { build, target: 'status', state: 'success', description: 'ready' } as const;
    await signalReporter(config, () => stack.temporal.client)([report]);
    // The worker that ran it goes; another one (none of its memory) takes the reporter over.
    await worker.stop();
    worker = await stack.temporal.startWorker();
    await waitFor('the queued report delivered', async () =>
      writes()
        .slice(before)
        .some((call) => call.status === 201),
    );
    const sent = writes().slice(before);
    expect(sent.map((call) => [call.status, stateOf(call)])).toEqual([
      [403, 'pending'],
      [201, 'success'],
    ]);
    expect(sent[1].at - sent[0].at).toBeGreaterThanOrEqual(3_000);
    // GitHub answers before the reporter hears of it: its queue empties once the activity's
    // completion reaches the workflow.
    await waitFor('an empty queue', async () => (await reporterState()).queued.length === 0);

    // The reporter's whole history so far (both tests: batches, a rate limit's wait, a report
    // failed on, continued on another worker) is kept as a release's fixture.
    const reporter = stack.temporal.client.workflow.getHandle(githubReportsWorkflowId(config.taskQueue));
    await replayAndRecord('github-reports.json', await reporter.fetchHistory());
  });

  it("waits out GitHub's limit across a continue-as-new, when reports signalled meanwhile fill the history", async () => {
    const { client } = stack.temporal;
    const before = writes().length;
    github.answerNext(1, rateLimited(4), (call) => call.method === 'POST');
    const reporter = await newReporterWith([report('8')]);
    await waitFor('the reporter waiting', async () => (await reporterState()).waitingUntil !== null);
    const { runId: waitingRun } = await reporter.describe();
    // Each report signalled adds four events (the signal, its workflow task): ten fill 30.
    for (const sha of ['9', '0', 'a', 'b', 'c', 'd', 'e', 'f', '1', '2'])
      await signalReporter(config, () => client)([report(sha)]);
    await waitFor('the next run', async () => (await reporter.describe()).runId !== waitingRun);
    await waitFor(
      'every report delivered',
      async () =>
        writes()
          .slice(before)
          .filter((call) => call.status === 201).length === 11,
    );
    const [refused, next] = writes().slice(before);
    expect(refused.status).toBe(403);
    // The next run kept GitHub's wait: nothing went before the 4 s it asked for.
    expect(next.at - refused.at).toBeGreaterThanOrEqual(4_000);
  });

  it('sends the commit statuses due before the deployment statuses, and those going inactive last', async () => {
    github.route('POST', '/repos/oca/stock-logistics/deployments', 201, { id: 51 });
    const before = writes().length;
    github.answerNext(1, rateLimited(2), (call) => call.method === 'POST');
    await newReporterWith([report('3')]);
    await waitFor('the reporter waiting', async () => (await reporterState()).waitingUntil !== null);
    // Queued while GitHub makes the reporter wait: deployments first, statuses after.
    await signalReporter(
      config,
      () => stack.temporal.client,
    )([report('4', 'deployment', 'inactive'), report('5', 'deployment'), report('4'), report('5')]);
    await waitFor('every report delivered', async () => (await reporterState()).queued.length === 0);
    // After the refusal: the three statuses, then the deployment of '5' (created, then its status).
    // The inactive one finds no deployment on GitHub to mark: it writes nothing.
    expect(
      writes()
        .slice(before + 1)
        .map((call) => call.path.replace(/\/statuses\/[0-9a-f]{40}$/, '/statuses/…')),
    ).toEqual([
      '/repos/oca/stock-logistics/statuses/…',
      '/repos/oca/stock-logistics/statuses/…',
      '/repos/oca/stock-logistics/statuses/…',
      '/repos/oca/stock-logistics/deployments',
      '/repos/oca/stock-logistics/deployments/51/statuses',
    ]);
    const lookups = github.calls.filter(
      (call) => call.method === 'GET' && call.path.includes('/deployments?'),
    );
    expect(lookups.at(-1)!.path).toContain(`sha=${SHA('4')}`);
  });

  it('continues as new with a queue too long for one payload, giving up the reports that would go last', async () => {
    const { client } = stack.temporal;
    github.answerNext(1, rateLimited(3_600), (call) => call.method === 'POST');
    const reporter = await newReporterWith([report('6')]);
    await waitFor('the reporter waiting', async () => (await reporterState()).waitingUntil !== null);
    const { runId: waitingRun } = await reporter.describe();
    // Thousands of builds undeployed and started while GitHub refuses for an hour: more than the
    // 2 MB Temporal takes in one payload (the next run's input).
    const many = (
      count: number,
      from: number,
      target: GitHubReport['target'],
      state: GitHubReport['state'],
    ) =>
      Array.from({ length: count }, (_, at) => ({
        build: {
          name: `b${from + at}`,
          commit: { ...commit('7'), pr: from + at, git_commit: `${from + at}`.padStart(40, 'a') },
        },
        target,
        state,
        description: state,
      }));
    const undeploys = many(8_000, 10_000, 'deployment', 'inactive');
    const starts = many(2_000, 20_000, 'status', 'success');
    expect(JSON.stringify([...undeploys, ...starts]).length).toBeGreaterThan(2 * 1024 * 1024);
    const queued = [...undeploys, ...starts];
    for (let from = 0; from < queued.length; from += 3_000)
      await signalReporter(config, () => client)(queued.slice(from, from + 3_000));
    // The run continues as new at its 30th event: a few more signals (the same report) get it there.
    await waitFor(
      'the next run',
      async () => {
        if ((await reporter.describe()).runId !== waitingRun) return true;
        await signalReporter(config, () => client)([report('6')]);
        return false;
      },
      60_000,
    );

    // It carried every status (they go first) and the undeploys that fit, still waiting on GitHub.
    const carried = await reporterState();
    expect(carried.waitingUntil).not.toBeNull();
    const statuses = carried.queued.filter((each) => each.target === 'status');
    expect(statuses).toHaveLength(2_001);
    const inactive = carried.queued.length - statuses.length;
    expect(inactive).toBeGreaterThan(1_000);
    expect(inactive).toBeLessThan(8_000);
    // Those left out are the last queued: the first undeploys stay.
    expect(carried.queued[2_001].build.name).toBe('b10000');
    // And /metrics says so.
    const metrics = await scrapeMetrics(stack.api);
    expect(metricSample(metrics, 'runboat_github_reports_queued{target="status"}')).toBe(2_001);
    expect(metricSample(metrics, 'runboat_github_reports_queued{target="deployment"}')).toBe(inactive);
    expect(metricSample(metrics, 'runboat_github_reports_given_up_total')).toBe(8_000 - inactive);
    expect(metricSample(metrics, 'runboat_github_reports_wait_seconds')).toBeGreaterThan(3_000);
    // Not left for the next tests: an hour's wait.
    await reporter.terminate('an hour of waiting');
  });
});
