import type { Config } from '../common/config';
import type { CommitInfo } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import type { BuildCounts } from '../common/build-index';
import type { ListedBuild } from '../common/search-attributes';

// The JSON runboat's clients expect, field for field, plus this project's additions.

export interface BuildJson {
  name: string;
  commit_info: CommitInfo;
  deploy_link: string;
  deploy_link_mailhog: string;
  repo_target_branch_link: string;
  repo_pr_link?: string | null;
  repo_commit_link: string;
  webui_link: string;
  status: string;
  created: string;
  last_scaled: string;
  /** Added by runboat-temporal. */
  init_status: string;
  workflow_link: string;
}

export function buildJson(config: Config, build: ListedBuild): BuildJson {
  const { repo, target_branch, pr, git_commit } = build.commit;
  return {
    name: build.name,
    commit_info: build.commit,
    deploy_link: `http://${build.slug}.${config.buildDomain}`,
    deploy_link_mailhog: `http://${build.slug}.mail.${config.buildDomain}`,
    repo_target_branch_link: `https://github.com/${repo}/tree/${target_branch}`,
    repo_pr_link: pr === null ? null : `https://github.com/${repo}/pull/${pr}`,
    // runboat links a PR build's commit within its pull request.
    repo_commit_link:
      pr === null
        ? `https://github.com/${repo}/commit/${git_commit}`
        : `https://github.com/${repo}/pull/${pr}/commits/${git_commit}`,
    webui_link: `${config.baseUrl}/builds/${build.name}`,
    status: build.status,
    created: build.created,
    // runboat: the `runboat/last-scaled` annotation, or the Deployment's creation time.
    last_scaled: build.last_scaled ?? build.created,
    init_status: build.init_status,
    workflow_link: `${config.temporalUiUrl}/namespaces/${encodeURIComponent(config.temporalNamespace)}/workflows/${encodeURIComponent(buildWorkflowId(build.name))}`,
  };
}

/**
 * runboat lists with `response_model_exclude_none`, which pydantic applies to nested models too:
 * a branch build has no `repo_pr_link` and no `commit_info.pr` in `GET /builds`.
 */
export function listedBuildJson(config: Config, build: ListedBuild): BuildJson {
  const json = buildJson(config, build);
  if (json.repo_pr_link === null) delete json.repo_pr_link;
  if (json.commit_info.pr === null) {
    const commitInfo: Partial<CommitInfo> = { ...json.commit_info };
    delete commitInfo.pr;
    json.commit_info = commitInfo as CommitInfo;
  }
  return json;
}

export interface StatusCounts {
  deployed: number;
  max_deployed: number;
  failed: number;
  stopped: number;
  started: number;
  max_started: number;
  to_initialize: number;
  initializing: number;
  max_initializing: number;
  undeploying: number;
}

/** `/status` from the build index's counts. */
export function statusFromCounts(
  config: Config,
  { statuses, toInitialize, initializing }: BuildCounts,
): StatusCounts {
  return {
    deployed: Object.values(statuses).reduce((a, b) => a + b, 0) - statuses.undeploying,
    max_deployed: config.maxDeployed,
    failed: statuses.failed,
    stopped: statuses.stopped,
    started: statuses.started,
    max_started: config.maxStarted,
    to_initialize: toInitialize,
    initializing,
    max_initializing: config.maxInitializing,
    undeploying: statuses.undeploying,
  };
}
