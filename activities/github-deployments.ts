import type { Config } from '../common/config';
import type { DeploymentState, GitHub } from '../common/github';
import type { CommitStatusState, ReportedBuild } from '../common/github-reports';

// Each build as a GitHub deployment (RUNBOAT_GITHUB_DEPLOYMENTS), so that its pull request shows
// "View deployment": reported on the same steps as the commit status, and `inactive` once the
// build is undeployed, through the GitHub reporter (activities/github-reports.ts).

const STATES: Record<CommitStatusState | 'inactive', DeploymentState> = {
  pending: 'in_progress',
  success: 'success',
  failure: 'failure',
  error: 'error',
  inactive: 'inactive',
};

/** Deployment ids this worker has found or created: saves a lookup per report. */
const CACHE_SIZE = 2_000;

export class GitHubDeployments {
  private readonly ids = new Map<string, number>();

  constructor(
    private readonly config: Config,
    private readonly github: GitHub,
  ) {}

  async report(
    build: ReportedBuild,
    state: CommitStatusState | 'inactive',
    description: string,
  ): Promise<void> {
    const id = await this.deploymentId(build, state === 'inactive');
    if (id === undefined) return;
    const page = `${this.config.baseUrl}/builds/${build.name}`;
    await this.github.postDeploymentStatus(build.commit, id, {
      state: STATES[state],
      description,
      logUrl: page,
      environmentUrl: state === 'success' ? `${page}?live` : undefined,
    });
    if (state === 'inactive') this.ids.delete(build.name);
  }

  private async deploymentId(build: ReportedBuild, existingOnly: boolean): Promise<number | undefined> {
    const cached = this.ids.get(build.name);
    if (cached !== undefined) return cached;
    const id = existingOnly
      ? await this.github.findDeployment(build.commit)
      : await this.github.findOrCreateDeployment(build.commit, `runboat build ${build.name}`);
    if (id !== undefined) {
      this.ids.set(build.name, id);
      if (this.ids.size > CACHE_SIZE) this.ids.delete(this.ids.keys().next().value as string);
    }
    return id;
  }
}
