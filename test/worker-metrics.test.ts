import type { ChildProcess } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import type { Config } from '../common/config';
import { freePort } from '../scripts/processes';
import { selectedSeries } from './prometheus-queries';
import { reportingTo, startGitHubRecorder, type GitHubRecorder } from './github-recorder';
import { SHA, spawnWorkerProcess, TestCluster, untilBuildStatus, waitFor } from './helpers';

// The worker's metrics, scraped from a worker process at RUNBOAT_WORKER_METRICS_ADDRESS as
// Prometheus would: its own counters (here, the reports GitHub refuses for good: a token without
// the right), and the Temporal SDK's series that the alert rules use.

let github: GitHubRecorder;
let config: Config;
let worker: ChildProcess | undefined;
let connection: Connection | undefined;
const metricsAddress = freePort().then((port) => `127.0.0.1:${port}`);

const temporalClient = () =>
  new Client({ connection: connection as Connection, namespace: config.temporalNamespace });
/** The worker's /metrics ('' while it does not answer yet). */
const scrape = async () =>
  fetch(`http://${await metricsAddress}/metrics`)
    .then((response) => response.text())
    .catch(() => '');
/** The first sample line of `metric` in a scrape that has every one of `labels` (`name="value"`). */
const sampleOf = (text: string, metric: string, ...labels: string[]) =>
  text
    .split('\n')
    .find((line) => line.startsWith(`${metric}{`) && labels.every((label) => line.includes(label)));
/**
 * Waits until the worker serves histogram `name` with `labels`, then reads that scrape: the
 * value of its `_count`, `_sum` or `_bucket` (with `more` labels, `le="60"` say).
 */
async function servedHistogram(name: string, labels: string[], what: string) {
  const text = await waitFor(what, async () => {
    const scraped = await scrape();
    return sampleOf(scraped, `${name}_count`, ...labels) && scraped;
  });
  return (series: 'count' | 'sum' | 'bucket', ...more: string[]) =>
    Number(
      sampleOf(text, `${name}_${series}`, ...labels, ...more)
        ?.split(' ')
        .at(-1),
    );
}

beforeAll(async () => {
  github = await startGitHubRecorder();
  github.serve((call) =>
    call.method === 'POST' && call.path.includes('/statuses/')
      ? { status: 403, body: { message: 'Resource not accessible by personal access token' } }
      : undefined,
  );
  config = reportingTo(github, { RUNBOAT_GITHUB_DEPLOYMENTS: 'false' });
  await new TestCluster(config.buildNamespace).createNamespace();
  worker = spawnWorkerProcess(config, {
    RUNBOAT_WORKER_METRICS_ADDRESS: await metricsAddress,
    RUNBOAT_GITHUB_TOKEN: 'test-token',
    RUNBOAT_GITHUB_DEPLOYMENTS: 'false',
  });
  connection = await Connection.connect({ address: config.temporalAddress });
});

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    const exited = new Promise((resolve) => worker?.once('exit', resolve));
    worker.kill('SIGTERM');
    await exited;
  }
  await connection?.close();
  await github?.close();
});

it('counts the reports GitHub refused for good, by target and status', async () => {
  const client = temporalClient();
  await startBuild(client, config, {
    repo: 'oca/web',
    target_branch: '16.0',
    pr: null,
    git_commit: SHA('a'),
  });
  const refused = await waitFor(
    'the refused status counted',
    async () =>
      sampleOf(await scrape(), 'runboat_github_reports_refused_total', 'target="status"', 'status="403"'),
    60_000,
  );
  expect(Number(refused.split(' ').at(-1))).toBeGreaterThanOrEqual(1);
  expect(github.calls.some((call) => call.path.includes('/statuses/') && call.status === 403)).toBe(true);
});

it('times the init Jobs from their start to their end, in buckets up to an hour', async () => {
  const client = temporalClient();
  const build = await startBuild(client, config, {
    repo: 'oca/web',
    target_branch: '16.0',
    pr: 7,
    git_commit: SHA('c'),
  });
  await new TestCluster(config.buildNamespace).finishJob(build.name, 'initialize', true, { ranSeconds: 90 });
  const value = await servedHistogram(
    'runboat_job_seconds',
    ['kind="initialize"', 'outcome="succeeded"'],
    'the init job timed',
  );
  expect(value('count')).toBe(1);
  expect(value('sum')).toBe(90);
  expect(value('bucket', 'le="60"')).toBe(0);
  expect(value('bucket', 'le="120"')).toBe(1);
  expect(value('bucket', 'le="3600"')).toBe(1);
});

it("serves the Temporal SDK's series the alert rules and the dashboard use, with the labels they match on", async () => {
  const used = selectedSeries().filter(({ metric }) => metric.startsWith('temporal_'));
  expect(used.length).toBeGreaterThan(0);
  // Each has samples once the worker ran a workflow task and an activity (the build above), and
  // failed one: a workflow type the worker does not have, as on a task queue shared by mistake.
  const client = temporalClient();
  const stranger = await client.workflow.start('noSuchWorkflow', {
    taskQueue: config.taskQueue,
    workflowId: `stranger-${SHA('b')}`,
  });
  try {
    const text = await waitFor('a sample of each', async () => {
      const scraped = await scrape();
      return used.every(({ metric }) => sampleOf(scraped, metric)) && scraped;
    });
    for (const { metric, labels } of used) {
      const sample = sampleOf(text, metric);
      for (const label of labels) expect(sample, `${metric}{${label}}`).toContain(`${label}="`);
    }
    expect(
      sampleOf(text, 'temporal_workflow_task_execution_failed_total', 'workflow_type="noSuchWorkflow"'),
    ).toContain('failure_reason="WorkflowError"');
  } finally {
    await stranger.terminate('test over');
  }
});

it('times how long people waited for builds to be started, by what they asked for', async () => {
  const client = temporalClient();
  const cluster = new TestCluster(config.buildNamespace);
  const build = await startBuild(client, config, {
    repo: 'oca/web',
    target_branch: '16.0',
    pr: 9,
    git_commit: SHA('d'),
  });
  // Only this build's pods come up: the build above still waits for its own.
  cluster.playDeploymentController(
    (deployment) => deployment.metadata?.labels?.['runboat/build'] === build.name,
  );
  try {
    const waited = async (request: string) => {
      const value = await servedHistogram(
        'runboat_build_ready_seconds',
        [`request="${request}"`],
        `the ${request} wait counted`,
      );
      return { count: value('count'), seconds: value('sum') };
    };
    const { created } = await getBuildState(client, build.name);
    // The build cannot be up before its init Job ends: the wait is at least until then.
    const initEnds = Date.now();
    await cluster.finishJob(build.name, 'initialize', true);
    await untilBuildStatus(client, build.name, 'started');
    const upAfter = (Date.now() - Date.parse(created)) / 1000;
    const fresh = await waited('new');
    expect(fresh.count).toBe(1);
    expect(fresh.seconds).toBeGreaterThanOrEqual((initEnds - Date.parse(created)) / 1000);
    expect(fresh.seconds).toBeLessThanOrEqual(upAfter);

    await sendBuildCommand(client, build.name, 'stop');
    await untilBuildStatus(client, build.name, 'stopped');
    const asked = Date.now();
    await sendBuildCommand(client, build.name, 'start');
    await untilBuildStatus(client, build.name, 'started');
    const woken = await waited('start');
    expect(woken.count).toBe(1);
    expect(woken.seconds).toBeGreaterThan(0);
    expect(woken.seconds).toBeLessThanOrEqual((Date.now() - asked) / 1000);

    const reset = Date.now();
    await sendBuildCommand(client, build.name, 'reset');
    await waitFor(
      'the new init Job',
      async () => (await getBuildState(client, build.name)).init_status === 'started',
    );
    await cluster.finishJob(build.name, 'initialize', true);
    await untilBuildStatus(client, build.name, 'started');
    const again = await waited('reset');
    expect(again.count).toBe(1);
    expect(again.seconds).toBeGreaterThan(0);
    expect(again.seconds).toBeLessThanOrEqual((Date.now() - reset) / 1000);
    // Neither the start nor the reset counted the build's first wait again.
    expect((await waited('new')).count).toBe(1);
  } finally {
    cluster.stopControllers();
  }
});
