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

  /** The commit a branch points at now, as a build identity. */
  async branchHead(repo: string, branch: string): Promise<CommitInfo> {
    const [owner, name] = repo.split('/');
    const { data } = await this.octokit.rest.repos.getBranch({ owner, repo: name, branch });
    return {
      repo,
      target_branch: branch,
      pr: null,
      git_commit: expectString(data.commit?.sha, 'commit.sha'),
    };
  }

  /** A pull request's head commit and the branch it targets, as a build identity. */
  async pullRequestHead(repo: string, pr: number): Promise<CommitInfo> {
    const [owner, name] = repo.split('/');
    const { data } = await this.octokit.rest.pulls.get({ owner, repo: name, pull_number: pr });
    return {
      repo,
      target_branch: expectString(data.base?.ref, 'base.ref'),
      pr,
      git_commit: expectString(data.head?.sha, 'head.sha'),
    };
  }
}

export class UnexpectedGitHubResponse extends Error {
  constructor(field: string) {
    super(`GitHub's answer has no ${field}`);
    this.name = 'UnexpectedGitHubResponse';
  }
}

function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new UnexpectedGitHubResponse(field);
  return value;
}
