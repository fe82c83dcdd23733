import { Octokit } from '@octokit/rest';
import type { Config } from '../common/config';
import type { CommitInfo } from '../common/types';

// All GitHub access goes through this module. The API base URL is configurable, so that
// tests point it at a local recording server (and GitHub Enterprise users at theirs).

export type CommitStatusState = 'pending' | 'success' | 'failure' | 'error';

export const COMMIT_STATUS_CONTEXT = 'runboat/build';
const REQUEST_TIMEOUT_MS = 10_000;

export class GitHub {
  private readonly octokit: Octokit;

  constructor(config: Config) {
    this.octokit = new Octokit({
      auth: config.githubToken,
      baseUrl: config.githubApiUrl,
      userAgent: 'runboat-temporal',
      request: { timeout: REQUEST_TIMEOUT_MS },
    });
  }

  async postCommitStatus(
    commit: CommitInfo,
    status: { state: CommitStatusState; description: string; targetUrl: string },
  ): Promise<void> {
    const [owner, repo] = commit.repo.split('/');
    await this.octokit.rest.repos.createCommitStatus({
      owner,
      repo,
      sha: commit.git_commit,
      state: status.state,
      description: status.description,
      target_url: status.targetUrl,
      context: COMMIT_STATUS_CONTEXT,
    });
  }
}
