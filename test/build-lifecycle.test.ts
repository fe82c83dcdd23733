import { temporal } from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import { buildWorkflowId } from '../workflows/definitions';
import type { BuildStatus, CommitInfo } from '../common/types';
import { useStack } from './api-server';
import {
  DEFAULT_DEPLOYMENT_OBJECTS,
  replayAndRecordRuns,
  runHistories,
  SHA,
  testConfig,
  waitFor,
  untilBuildStatus,
} from './helpers';

// One build's whole life on a real kube-apiserver and a real Temporal server, with the test
// playing the Job and Deployment controllers that this control plane does not run.

const config = testConfig();
const stack = useStack(config);
const { cluster } = stack;

const commit = (sha: string, pr: number | null = null): CommitInfo => ({
  repo: 'OCA/mis-builder',
  target_branch: '16.0',
  pr,
  git_commit: SHA(sha),
});

const statusOf = (name: string, status: BuildStatus) => untilBuildStatus(stack.temporal.client, name, status);

describe('a build', () => {
  it('is deployed idle with the kubefiles contract, initialized, started, stopped and undeployed', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('a', 42));
    const handle = stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name));
    const firstRunId = (await handle.describe()).runId;

    const deployment = await waitFor('the Deployment', () => cluster.deployment(build.name));
    expect(deployment.spec?.replicas).toBe(0);
    expect(deployment.metadata?.name).toBe(`${build.name}-odoo`);
    expect(deployment.metadata?.labels).toMatchObject({ 'runboat/build': build.name });
    expect(deployment.metadata?.annotations).toMatchObject({
      'runboat/repo': 'oca/mis-builder',
      'runboat/target-branch': '16.0',
      'runboat/pr': '42',
      'runboat/git-commit': SHA('a'),
    });
    expect(['todo', 'started']).toContain(deployment.metadata?.annotations?.['runboat/init-status']);

    const [initJob] = await waitFor('the init Job', async () => {
      const jobs = await cluster.jobs(build.name, 'initialize');
      return jobs.length ? jobs : undefined;
    });
    expect(initJob.spec?.template.metadata?.labels).toMatchObject({
      'runboat/build': build.name,
      'runboat/job-kind': 'initialize',
    });
    const objects = await cluster.builds.listBuildObjects(build.name);
    expect(objects.map((o) => `${o.kind}/${o.metadata?.name?.slice(build.name.length + 1)}`).sort()).toEqual(
      [...DEFAULT_DEPLOYMENT_OBJECTS, 'Job/initialize'].sort(),
    );
    expect(objects.every((o) => o.metadata?.name?.startsWith(`${build.name}-`))).toBe(true);

    await waitFor('init-status started', async () => {
      const d = await cluster.deployment(build.name);
      return d.metadata?.annotations?.['runboat/init-status'] === 'started';
    });

    await cluster.finishJob(build.name, 'initialize', true);
    await statusOf(build.name, 'started');
    const started = await cluster.deployment(build.name);
    expect(started.spec?.replicas).toBe(1);
    expect(started.metadata?.annotations?.['runboat/init-status']).toBe('succeeded');
    expect(started.metadata?.annotations?.['runboat/last-scaled']).toBeTruthy();

    await sendBuildCommand(stack.temporal.client, build.name, 'stop');
    await statusOf(build.name, 'stopped');
    expect((await cluster.deployment(build.name)).spec?.replicas).toBe(0);

    await sendBuildCommand(stack.temporal.client, build.name, 'start');
    await statusOf(build.name, 'started');
    expect((await cluster.deployment(build.name)).spec?.replicas).toBe(1);

    await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
    await statusOf(build.name, 'undeploying');
    await cluster.finishJob(build.name, 'cleanup', true);
    await handle.result();
    expect(await cluster.builds.listBuildObjects(build.name)).toEqual([]);

    // The whole life replays deterministically, and is a release's fixtures (replayAndRecord):
    // the run that came to rest when the build stopped, and the run that took it from there.
    const runs = await runHistories(stack.temporal.client.workflow, handle.workflowId, firstRunId);
    expect(runs).toHaveLength(2);
    for (const events of runs)
      expect(historyWaste(events)).toEqual({ patchMarkers: 1, upsertsChangingNothing: 0 });
    await replayAndRecordRuns('build-full-lifecycle', runs);
  });

  it('stays stopped at 0 replicas when its init job fails', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('b'));
    await cluster.finishJob(build.name, 'initialize', false);
    await statusOf(build.name, 'failed');
    const state = await getBuildState(stack.temporal.client, build.name);
    expect(state.init_status).toBe('failed');
    expect(state.last_error).toContain('BackoffLimitExceeded');
    const deployment = await cluster.deployment(build.name);
    expect(deployment.spec?.replicas).toBe(0);
    expect(deployment.metadata?.annotations?.['runboat/init-status']).toBe('failed');
  });

  it('is one build when the same commit is started twice', async () => {
    const [first, second] = await Promise.all([
      startBuild(stack.temporal.client, config, commit('c')),
      startBuild(stack.temporal.client, { ...config }, { ...commit('c'), repo: 'oca/MIS-builder' }),
    ]);
    expect(second.name).toBe(first.name);
    await waitFor('the Deployment', () => cluster.deployment(first.name));
    const { items } = await cluster.apps.listNamespacedDeployment({ namespace: config.buildNamespace });
    expect(items.filter((d) => d.metadata?.labels?.['runboat/build'] === first.name)).toHaveLength(1);
  });
});

/**
 * What a build's history records that the server pays for and that changes nothing: each patch
 * marker comes with an upsert of TemporalChangeVersion (one patch per run is the floor), and an
 * upsert of the build's attributes that only restamps RunboatUpdated.
 */
function historyWaste(events: temporal.api.history.v1.IHistoryEvent[]) {
  const payloadText = (payload: temporal.api.common.v1.IPayload) =>
    Buffer.from(payload.data ?? []).toString();
  const attributes = new Map<string, string>();
  const apply = (fields: Record<string, temporal.api.common.v1.IPayload> = {}) => {
    let changed = false;
    for (const [name, payload] of Object.entries(fields)) {
      if (name !== 'RunboatUpdated' && attributes.get(name) !== payloadText(payload)) changed = true;
      attributes.set(name, payloadText(payload));
    }
    return changed;
  };
  apply(events[0]?.workflowExecutionStartedEventAttributes?.searchAttributes?.indexedFields ?? {});
  let patchMarkers = 0;
  let upsertsChangingNothing = 0;
  for (const event of events) {
    if (event.markerRecordedEventAttributes?.markerName === 'core_patch') patchMarkers++;
    const upserted = event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields;
    if (upserted && !('TemporalChangeVersion' in upserted) && !apply(upserted)) upsertsChangingNothing++;
  }
  return { patchMarkers, upsertsChangingNothing };
}
