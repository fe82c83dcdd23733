import { Octokit } from '@octokit/rest';
import type { Config } from './config';
import type { CommitInfo } from './types';

// All GitHub access goes through this module. The API base URL is configurable, so that
// tests point it at a local recording server (and GitHub Enterprise users at theirs).

export type CommitStatusState = 'pending' | 'success' | 'failure' | 'error';

export const COMMIT_STATUS_CONTEXT = 'runboat/build';

export type DeploymentState = 'in_progress' | 'success' | 'failure' | 'error' | 'inactive';

/** One environment per pull request or branch: `runboat/<target branch>[/pr-<n>]`. */
export function deploymentEnvironment(commit: CommitInfo): string {
  return `runboat/${commit.target_branch}${commit.pr === null ? '' : `/pr-${commit.pr}`}`;
}
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

  /**
   * The build's deployment: found by environment and sha, or created, so that every retry and
   * every worker lands on the same one without keeping its id anywhere.
   */
  async findOrCreateDeployment(commit: CommitInfo, description: string): Promise<number> {
    const [owner, repo] = commit.repo.split('/');
    const environment = deploymentEnvironment(commit);
    const found = await this.findDeployment(commit);
    if (found !== undefined) return found;
    const { data } = await this.octokit.rest.repos.createDeployment({
      owner,
      repo,
      ref: commit.git_commit,
      environment,
      description,
      // A preview: GitHub marks it inactive when a newer one of the environment succeeds.
      transient_environment: true,
      production_environment: false,
      auto_merge: false,
      // GitHub would otherwise wait for the commit's statuses, our own pending one included.
      required_contexts: [],
    });
    const id = (data as { id?: unknown }).id;
    if (typeof id !== 'number') throw new UnexpectedGitHubResponse('deployment id');
    return id;
  }

  async findDeployment(commit: CommitInfo): Promise<number | undefined> {
    const [owner, repo] = commit.repo.split('/');
    const { data } = await this.octokit.rest.repos.listDeployments({
      owner,
      repo,
      sha: commit.git_commit,
      environment: deploymentEnvironment(commit),
      per_page: 1,
    });
    const id = Array.isArray(data) ? (data[0] as { id?: unknown } | undefined)?.id : undefined;
    return typeof id === 'number' ? id : undefined;
  }

  async postDeploymentStatus(
    commit: CommitInfo,
    deploymentId: number,
    status: { state: DeploymentState; description: string; environmentUrl?: string; logUrl?: string },
  ): Promise<void> {
    const [owner, repo] = commit.repo.split('/');
    await this.octokit.rest.repos.createDeploymentStatus({
      owner,
      repo,
      deployment_id: deploymentId,
      state: status.state,
      description: status.description,
      environment_url: status.environmentUrl,
      log_url: status.logUrl,
      // Only the newest deployment of the environment stays active.
      auto_inactive: true,
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
