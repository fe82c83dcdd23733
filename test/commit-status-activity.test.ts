import { describe, expect, it, vi } from 'vitest';
import { createActivities } from '../activities';
import type { GitHub } from '../common/github';
import type { BuildCluster } from '../common/kubernetes';
import { buildRef } from '../common/build';
import { SHA, testConfig } from './helpers';

// The activity alone: nothing of Kubernetes or Temporal is involved in these decisions.

const build = buildRef({ repo: 'oca/web', target_branch: '16.0', pr: null, git_commit: SHA('f') });

function activitiesWith(env: Record<string, string>) {
  const github = { postCommitStatus: vi.fn(async () => undefined) };
  const activities = createActivities(testConfig(env), {} as BuildCluster, github as unknown as GitHub);
  return { activities, github };
}

describe('reportCommitStatus', () => {
  it('posts nothing when RUNBOAT_DISABLE_COMMIT_STATUSES is set', async () => {
    const { activities, github } = activitiesWith({ RUNBOAT_DISABLE_COMMIT_STATUSES: 'true' });
    await activities.reportCommitStatus(build, 'pending', 'initializing');
    expect(github.postCommitStatus).not.toHaveBeenCalled();
  });

  it('links the status to the live build under RUNBOAT_BASE_URL', async () => {
    const { activities, github } = activitiesWith({
      RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
      RUNBOAT_BASE_URL: 'https://runboat.example.org/',
    });
    await activities.reportCommitStatus(build, 'success', 'ready');
    expect(github.postCommitStatus).toHaveBeenCalledWith(build.commit, {
      state: 'success',
      description: 'ready',
      targetUrl: `https://runboat.example.org/builds/${build.name}?live`,
    });
  });
});
