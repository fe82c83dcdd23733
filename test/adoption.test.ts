import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { sendBuildCommand, startBuild } from '../api/build-client';
import { adoptionOf } from '../common/adoption';
import { buildRef } from '../common/build';
import { listRunningBuilds } from '../common/build-list';
import type { OrphanSweep } from '../common/types';
import { workflowStates } from '../activities/coordination';
import { planOrphans } from '../activities/orphans';
import { describePlan } from '../worker/orphans';
import type { orphanSweepWorkflow } from '../workflows';
import { buildWorkflowId } from '../workflows/definitions';
import { useStack } from './api-server';
import { SHA, serviceEnv, terminateBuildWorkflow, testConfig, untilBuildStatus, waitFor } from './helpers';

// Moving from runboat: its builds stay deployed in the namespace it hands over, each one's state
// on its Deployment (runboat kept nothing else). The orphan sweep takes each over with a
// workflow, where the build is, instead of deleting it without its cleanup.

const config = testConfig({ RUNBOAT_NO_CLEANUP_JOB: 'true' });
const stack = useStack(config);

/** A build as runboat named it: `b` and a uuid. */
const runboatName = (n: number) => `b${n}0000000-0000-4000-8000-000000000000`;

interface RunboatBuild {
  name: string;
  repo?: string;
  branch?: string;
  pr?: number;
  initStatus: string;
  replicas: number;
  lastScaled?: string;
}

/** What runboat's own kubefiles left for a build: its Deployment (finalizer and all) and Service. */
async function deployAsRunboatDid(build: RunboatBuild): Promise<void> {
  const labels = { 'runboat/build': build.name };
  const annotations = {
    'runboat/repo': build.repo ?? 'oca/mis-builder',
    'runboat/target-branch': build.branch ?? '16.0',
    'runboat/pr': build.pr ? String(build.pr) : '',
    'runboat/git-commit': SHA(build.name.slice(1, 2)),
    'runboat/init-status': build.initStatus,
    ...(build.lastScaled ? { 'runboat/last-scaled': build.lastScaled } : {}),
  };
  const { namespace } = stack.cluster;
  await stack.cluster.apps.createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name: `${build.name}-odoo`, labels, annotations, finalizers: ['runboat/cleanup'] },
      spec: {
        replicas: build.replicas,
        selector: { matchLabels: { ...labels, app: 'odoo' } },
        template: {
          metadata: { labels: { ...labels, app: 'odoo' } },
          spec: { containers: [{ name: 'odoo', image: 'odoo:16.0' }] },
        },
      },
    },
  });
  await stack.cluster.core.createNamespacedService({
    namespace,
    body: {
      metadata: { name: `${build.name}-odoo`, labels, annotations },
      spec: { selector: { ...labels, app: 'odoo' }, ports: [{ port: 8069 }] },
    },
  });
}

const sweep = (): Promise<OrphanSweep> =>
  stack.temporal.client.workflow.execute<typeof orphanSweepWorkflow>('orphanSweepWorkflow', {
    args: [{ graceSeconds: 0 }],
    taskQueue: config.taskQueue,
    workflowId: `orphan-sweep-${config.taskQueue}-${Date.now()}`,
  });

const buildJson = async (name: string) => {
  const response = await stack.api.request('GET', `/api/v1/builds/${name}`);
  return response.status === 200 ? ((await response.json()) as Record<string, unknown>) : undefined;
};

it("adopts runboat's builds where they are, and still sweeps what no workflow can take over", async () => {
  const stopped = {
    name: runboatName(1),
    pr: 42,
    initStatus: 'succeeded',
    replicas: 0,
    lastScaled: '2026-11-30T08:00:00Z',
  };
  const started = { name: runboatName(2), initStatus: 'succeeded', replicas: 1 };
  const failed = { name: runboatName(3), initStatus: 'failed', replicas: 0 };
  const initializing = { name: runboatName(4), initStatus: 'started', replicas: 0 };
  const unconfigured = { name: runboatName(5), repo: 'acsone/gone', initStatus: 'succeeded', replicas: 0 };
  const malformed = { name: runboatName(6), initStatus: 'unknown', replicas: 0 };
  for (const build of [stopped, started, failed, initializing, unconfigured, malformed])
    await deployAsRunboatDid(build);
  // One of this service's builds whose workflow was terminated: an orphan, as before.
  const terminated = await startBuild(stack.temporal.client, config, {
    repo: 'oca/orphans',
    target_branch: '16.0',
    pr: null,
    git_commit: SHA('7'),
  });
  await waitFor('its Deployment', () => stack.cluster.deployment(terminated.name));
  await terminateBuildWorkflow(stack.temporal.client, config, terminated.name);

  // What `npm run orphans` shows beforehand is what the sweep then does.
  const plan = await planOrphans(stack.temporal.client, config, stack.cluster.builds, 0);
  const preview = describePlan(plan, 0);
  expect(preview).toContain('- adopt 5 builds: ');
  expect(preview).toContain('(1 of a repo or branch RUNBOAT_REPOS no longer has)');
  expect(preview).toContain('- delete the objects of 2 builds');
  expect(preview).toContain(`delete ${terminated.name}  its workflow ended`);
  expect(preview).toContain(
    `delete ${malformed.name}  no workflow, and not adoptable: runboat/init-status "unknown" is not one of runboat's`,
  );
  expect(preview).toContain(
    `adopt  ${initializing.name}  initializing (initialized again)  oca/mis-builder 16.0`,
  );
  expect(preview).toContain(`adopt  ${unconfigured.name}  stopped  acsone/gone 16.0  (not configured)`);

  const swept = await sweep();
  expect(swept.adopted?.sort()).toEqual(
    [stopped, started, failed, initializing, unconfigured].map((build) => build.name).sort(),
  );
  expect(swept.builds.sort()).toEqual([malformed.name, terminated.name].sort());
  expect(await stack.cluster.builds.listBuildObjects(malformed.name)).toEqual([]);

  // Each where runboat left it, under runboat's name, slug and links.
  const json = await waitFor('the stopped build in the API', () => buildJson(stopped.name));
  expect(json).toMatchObject({
    name: stopped.name,
    commit_info: { repo: 'oca/mis-builder', target_branch: '16.0', pr: 42, git_commit: SHA('1') },
    status: 'stopped',
    last_scaled: '2026-11-30T08:00:00.000Z',
    deploy_link: `http://oca-mis-builder-16-0-pr42-${SHA('1').slice(0, 12)}.runboat.test`,
  });
  expect(json?.created).toBe(
    (await stack.cluster.deployment(stopped.name)).metadata?.creationTimestamp?.toISOString(),
  );
  await waitFor('the started build', async () => (await buildJson(started.name))?.status === 'started');
  expect((await buildJson(failed.name))?.status).toBe('failed');
  expect((await buildJson(unconfigured.name))?.status).toBe('stopped');
  // An initialization runboat had under way starts over, with this service's init Job.
  await waitFor(
    'the init Job',
    async () => (await stack.cluster.jobs(initializing.name, 'initialize')).length === 1,
  );
  expect((await buildJson(initializing.name))?.status).toBe('initializing');

  // Adopted builds take commands: a start, and an undeploy that removes runboat's finalizer.
  await sendBuildCommand(stack.temporal.client, stopped.name, 'start');
  await waitFor(
    'the adopted build started',
    async () => (await buildJson(stopped.name))?.status === 'started',
  );
  await sendBuildCommand(stack.temporal.client, failed.name, 'undeploy');
  await stack.temporal.client.workflow.getHandle(buildWorkflowId(failed.name)).result();
  expect(await stack.cluster.builds.listBuildObjects(failed.name)).toEqual([]);

  // Running workflows now: the next sweep leaves them be.
  expect(await sweep()).toEqual({ builds: [], objects: 0, adopted: [] });
});

it('takes over a build runboat was undeploying, and finishes the undeploy', async () => {
  const undeploying = { name: runboatName(8), initStatus: 'succeeded', replicas: 0 };
  await deployAsRunboatDid(undeploying);
  // runboat deleted the Deployment; its finalizer held it for runboat's cleanup.
  await stack.cluster.apps.deleteNamespacedDeployment({
    name: `${undeploying.name}-odoo`,
    namespace: stack.cluster.namespace,
  });

  // `npm run orphans`, as an operator runs it before the worker: the worker's configuration.
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', 'worker/orphans.ts', '--all'],
    { cwd: path.resolve(__dirname, '..'), env: { ...process.env, ...serviceEnv(config), LOG_LEVEL: 'warn' } },
  );
  expect(stdout).toContain('- adopt 1 builds: 1 undeploying\n');
  expect(stdout).toContain(`adopt  ${undeploying.name}  undeploying  oca/mis-builder 16.0\n`);

  expect((await sweep()).adopted).toEqual([undeploying.name]);
  await stack.temporal.client.workflow.getHandle(buildWorkflowId(undeploying.name)).result();
  expect(await stack.cluster.builds.listBuildObjects(undeploying.name)).toEqual([]);
});

it("recovers this service's own build whose history Temporal lost", async () => {
  const { client } = stack.temporal;
  stack.cluster.playJobController();
  const build = await startBuild(client, config, {
    repo: 'oca/recovered',
    target_branch: '16.0',
    pr: 3,
    git_commit: SHA('d'),
  });
  await untilBuildStatus(client, build.name, 'started');
  const before = await buildJson(build.name);
  // Every run of its workflow deleted, as a lost database would have it.
  for await (const run of client.workflow.list({ query: `WorkflowId = '${buildWorkflowId(build.name)}'` }))
    await client.workflowService.deleteWorkflowExecution({
      namespace: config.temporalNamespace,
      workflowExecution: { workflowId: run.workflowId, runId: run.runId },
    });
  // Deleted asynchronously, from the history and from visibility (which the sweep reads first).
  await waitFor('its history gone', async () => {
    const [state] = (await workflowStates(client, [buildWorkflowId(build.name)])).values();
    const listed = (await listRunningBuilds(client, config.taskQueue)).some(
      ({ name }) => name === build.name,
    );
    return state === 'unknown' && !listed;
  });

  expect((await sweep()).adopted).toEqual([build.name]);
  await untilBuildStatus(client, build.name, 'started');
  expect(await buildJson(build.name)).toMatchObject({
    name: build.name,
    commit_info: build.commit,
    status: 'started',
    last_scaled: before?.last_scaled,
  });
  // From its Deployment, created to the second just after the workflow started.
  const created = Date.parse((await buildJson(build.name))?.created as string);
  expect(Math.abs(created - Date.parse(before?.created as string))).toBeLessThan(2_000);
});

describe("runboat's statuses, read from the Deployment as runboat read them", () => {
  const deployment = (
    annotations: Record<string, string>,
    replicas: number,
    status: V1Deployment['status'] = {},
    deleting = false,
  ): V1Deployment => ({
    metadata: {
      labels: { 'runboat/build': runboatName(9) },
      annotations: {
        'runboat/repo': 'OCA/Server-Tools',
        'runboat/target-branch': '17.0',
        'runboat/pr': '',
        'runboat/git-commit': SHA('9'),
        ...annotations,
      },
      creationTimestamp: new Date('2026-01-02T03:04:05Z'),
      ...(deleting ? { deletionTimestamp: new Date() } : {}),
    },
    spec: { replicas, selector: {}, template: {} },
    status,
  });
  const statusOf = (d: V1Deployment) => {
    const adoption = adoptionOf(d);
    return 'refused' in adoption
      ? adoption.refused
      : [adoption.state.status, adoption.phase, adoption.state.init_status];
  };

  it.each([
    ['todo', 0, {}, false, ['initializing', 'redeploy', 'todo']],
    ['started', 0, {}, false, ['initializing', 'redeploy', 'todo']],
    ['failed', 0, {}, false, ['failed', 'live', 'failed']],
    ['succeeded', 0, {}, false, ['stopped', 'live', 'succeeded']],
    ['succeeded', 0, { replicas: 1 }, false, ['stopping', 'live', 'succeeded']],
    ['succeeded', 1, { availableReplicas: 1 }, false, ['started', 'live', 'succeeded']],
    ['succeeded', 1, {}, false, ['starting', 'live', 'succeeded']],
    ['succeeded', 1, { availableReplicas: 1 }, true, ['undeploying', 'undeploy', 'succeeded']],
  ] as const)(
    'init %s, %i replicas wanted, status %o, deleting %s: %o',
    (init, replicas, status, deleting, expected) => {
      expect(statusOf(deployment({ 'runboat/init-status': init }, replicas, status, deleting))).toEqual(
        expected,
      );
    },
  );

  it('keeps the identity: repo lower-cased as runboat compared it, the pr a number, the creation time', () => {
    const adoption = adoptionOf(deployment({ 'runboat/init-status': 'succeeded', 'runboat/pr': '12' }, 0));
    expect(adoption).toMatchObject({
      state: {
        name: runboatName(9),
        slug: `oca-server-tools-17-0-pr12-${SHA('9').slice(0, 12)}`,
        commit: { repo: 'oca/server-tools', target_branch: '17.0', pr: 12, git_commit: SHA('9') },
        created: '2026-01-02T03:04:05.000Z',
        last_scaled: null,
      },
    });
  });

  it("takes runboat's names and this service's own, no other", () => {
    const named = (name: string) => {
      const d = deployment({ 'runboat/init-status': 'succeeded' }, 0);
      d.metadata!.labels = { 'runboat/build': name };
      return adoptionOf(d);
    };
    const own = buildRef({
      repo: 'oca/server-tools',
      target_branch: '17.0',
      pr: null,
      git_commit: SHA('9'),
    }).name;
    expect(named(own)).toHaveProperty('state.name', own);
    expect(named('b3fa85f64-5717-4562-b3fc-2c963f66afa6')).toHaveProperty('phase', 'live');
    for (const name of ['other-build', 'b3fa85f64', ''])
      expect(named(name)).toEqual({
        refused: `${JSON.stringify(name)} is neither runboat's name of a build nor this service's`,
      });
  });

  it.each([
    [{ 'runboat/init-status': 'done' }, 'runboat/init-status "done" is not one of runboat\'s'],
    [{ 'runboat/init-status': 'succeeded', 'runboat/git-commit': 'main' }, 'is not a 40-digit hex sha'],
    [{ 'runboat/init-status': 'succeeded', 'runboat/repo': 'oca/$(id)' }, 'has characters outside'],
    [{ 'runboat/init-status': 'succeeded', 'runboat/pr': 'abc' }, 'is not a positive integer'],
  ])('refuses a Deployment that does not describe a build: %o', (annotations, reason) => {
    const adoption = adoptionOf(deployment(annotations, 0));
    expect('refused' in adoption && adoption.refused).toContain(reason);
  });
});
