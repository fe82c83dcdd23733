import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendBuildCommand, startBuild } from '../api/build-client';
import type { BuildStatus, CommitInfo } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import { startReportingStack, statesInTurn, type ReportingStack } from './github-recorder';
import { SHA, waitFor, untilBuildStatus } from './helpers';

// Each build as a GitHub deployment, read back from a local server that records what GitHub
// would receive.

let reporting: ReportingStack;
let { github, stack, config, cluster } = {} as ReportingStack;
beforeAll(async () => {
  ({ github, stack, config, cluster } = reporting = await startReportingStack({
    RUNBOAT_NO_CLEANUP_JOB: 'true',
  }));
  expect(config.githubDeployments).toBe(true);
});
afterAll(() => reporting?.close());

const REPO = '/repos/oca/sale-workflow';

const commit = (sha: string, pr: number | null): CommitInfo => ({
  repo: 'oca/sale-workflow',
  target_branch: '16.0',
  pr,
  git_commit: SHA(sha),
});
const reach = (name: string, status: BuildStatus) => untilBuildStatus(stack.temporal.client, name, status);
const statusesOf = (id: number) =>
  github.calls
    .filter((call) => call.method === 'POST' && call.path === `${REPO}/deployments/${id}/statuses`)
    .map((call) => call.body as { state: string; environment_url?: string; log_url?: string });
const statesOf = (id: number) => statesInTurn(statusesOf(id).map((status) => status.state));

describe('GitHub deployments', () => {
  it('creates one transient deployment per build, in_progress then success with the live link, inactive once undeployed', async () => {
    github.route('POST', `${REPO}/deployments`, 201, { id: 41 });
    const build = await startBuild(stack.temporal.client, config, commit('a', 12));
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build.name, 'started');
    await waitFor('the success status', async () => statusesOf(41).some((s) => s.state === 'success'));

    const created = github.calls.filter(
      (call) => call.method === 'POST' && call.path === `${REPO}/deployments`,
    );
    expect(created).toHaveLength(1);
    expect(created[0].body).toMatchObject({
      ref: SHA('a'),
      environment: 'runboat/16.0/pr-12',
      transient_environment: true,
      production_environment: false,
      auto_merge: false,
      required_contexts: [],
    });
    // Found by environment and sha before being created: a retry or another worker finds it.
    const lookup = github.calls.find(
      (call) => call.method === 'GET' && call.path.startsWith(`${REPO}/deployments?`),
    );
    expect(lookup?.path).toContain(`sha=${SHA('a')}`);
    expect(lookup?.path).toContain(`environment=${encodeURIComponent('runboat/16.0/pr-12')}`);

    const page = `https://runboat.example.org/builds/${build.name}`;
    expect(statesOf(41)).toEqual(['in_progress', 'success']);
    expect(statusesOf(41).at(-1)).toMatchObject({ environment_url: `${page}?live`, log_url: page });
    // The commit status is still posted beside it.
    await waitFor('the success commit status', async () =>
      github.calls.some(
        (call) =>
          call.path === `${REPO}/statuses/${SHA('a')}` &&
          (call.body as { state: string }).state === 'success',
      ),
    );

    await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
    await waitFor('the inactive status', async () => statesOf(41).includes('inactive'));
    expect(statesOf(41)).toEqual(['in_progress', 'success', 'inactive']);
  });

  it('reports failure on a branch environment when the init fails', async () => {
    github.route('POST', `${REPO}/deployments`, 201, { id: 42 });
    const build = await startBuild(stack.temporal.client, config, commit('b', null));
    await cluster.finishJob(build.name, 'initialize', false);
    await reach(build.name, 'failed');
    await waitFor('the failure status', async () => statusesOf(42).some((s) => s.state === 'failure'));
    const created = github.calls.filter(
      (call) =>
        call.method === 'POST' &&
        call.path === `${REPO}/deployments` &&
        (call.body as { ref: string }).ref === SHA('b'),
    );
    expect(created.map((call) => (call.body as { environment: string }).environment)).toEqual([
      'runboat/16.0',
    ]);
  });

  it('never fails a build when GitHub keeps failing on its deployment, nor holds up its other reports', async () => {
    github.route('POST', `${REPO}/deployments`, 500, { message: 'boom' });
    const build = await startBuild(stack.temporal.client, config, commit('c', 13));
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build.name, 'started');
    await waitFor('the success commit status', async () =>
      github.calls.some(
        (call) =>
          call.path === `${REPO}/statuses/${SHA('c')}` &&
          (call.body as { state: string }).state === 'success',
      ),
    );
  });
});
