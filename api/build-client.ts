import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { TypedSearchAttributes } from '@temporalio/common';
import { buildRef, UnsafeCommitInfoError } from '../common/build';
import { findRepoSettings, type Config } from '../common/config';
import { logger } from '../common/logger';
import { capBuildsOfRef } from './per-ref-cap';
import { searchAttributes } from '../common/search-attributes';
import type {
  BuildCommand,
  BuildRef,
  BuildSnapshot,
  BuildState,
  BuildStatus,
  CommitInfo,
  InitStatus,
} from '../common/types';
import {
  buildStateQuery,
  buildWorkflowId,
  commandSignals,
  forceUndeploySignal,
  type LifecycleSettings,
} from '../workflows/definitions';
import type { buildWorkflow } from '../workflows';

// How the API (and tests) drive build workflows: always through Temporal, never Kubernetes.

export class UnsupportedBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedBuildError';
  }
}

/**
 * Starts the build of `commit`, or finds the one already running: the workflow id is derived
 * from the build's identity, so a redelivered webhook or a racing trigger yields one build.
 * Refuses (and logs) commits whose values are unsafe or whose repo/branch is not configured.
 */
export async function startBuild(client: Client, config: Config, commit: CommitInfo): Promise<BuildRef> {
  let build: BuildRef;
  try {
    build = buildRef(commit);
    if (!findRepoSettings(config, build.commit.repo, build.commit.target_branch)) {
      throw new UnsupportedBuildError(
        `${build.commit.repo} ${build.commit.target_branch} matches no RUNBOAT_REPOS entry`,
      );
    }
  } catch (error) {
    logger.warn({ commit, reason: (error as Error).message }, 'build refused');
    throw error;
  }
  await client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
    workflowId: buildWorkflowId(build.name),
    taskQueue: config.taskQueue,
    args: [{ build, settings: lifecycleSettings(config) }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
  });
  try {
    await capBuildsOfRef(client, config, build);
  } catch (error) {
    // The build is started; its elders go at the next build of the ref or by eviction.
    logger.warn({ err: error, build: build.name }, 'per-ref cap not applied');
  }
  return build;
}

export function lifecycleSettings(config: Config): LifecycleSettings {
  return {
    maxInitializing: config.maxInitializing,
    initTimeoutSeconds: config.initTimeoutSeconds,
    noCleanupJob: config.noCleanupJob,
    autoStopAfterSeconds: config.autoStopAfterSeconds,
  };
}

/** Undeploys `name` without its cleanup job; the reason is kept in the build's history. */
export async function forceUndeployBuild(client: Client, name: string, reason: string): Promise<void> {
  await client.workflow.getHandle(buildWorkflowId(name)).signal(forceUndeploySignal, reason);
}

export async function sendBuildCommand(client: Client, name: string, command: BuildCommand): Promise<void> {
  await client.workflow.getHandle(buildWorkflowId(name)).signal(commandSignals[command]);
}

export async function getBuildState(client: Client, name: string): Promise<BuildSnapshot> {
  return client.workflow.getHandle(buildWorkflowId(name)).query(buildStateQuery);
}

/** runboat's filters: `branch` means builds of that branch itself, not of its PRs. */
export interface BuildFilter {
  repo?: string;
  target_branch?: string;
  branch?: string;
  pr?: number;
  status?: BuildStatus;
  name?: string;
}

/** A build as visibility lists it: every field the API shows comes from search attributes. */
export type ListedBuild = Omit<BuildState, 'last_error'>;

/**
 * Running build workflows of this deployment's task queue that match `filter`, oldest first.
 * Filter values are validated by the caller; they are quoted here all the same.
 */
export async function listBuilds(
  client: Client,
  config: Config,
  filter: BuildFilter = {},
): Promise<ListedBuild[]> {
  const quote = (value: string) => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const clauses = [
    `WorkflowType = 'buildWorkflow'`,
    `ExecutionStatus = 'Running'`,
    `TaskQueue = ${quote(config.taskQueue)}`,
  ];
  if (filter.repo) clauses.push(`${searchAttributes.repo.name} = ${quote(filter.repo.toLowerCase())}`);
  if (filter.target_branch)
    clauses.push(`${searchAttributes.targetBranch.name} = ${quote(filter.target_branch)}`);
  if (filter.branch) {
    clauses.push(
      `${searchAttributes.targetBranch.name} = ${quote(filter.branch)}`,
      `${searchAttributes.pr.name} IS NULL`,
    );
  }
  if (filter.pr !== undefined) clauses.push(`${searchAttributes.pr.name} = ${filter.pr}`);
  if (filter.status) clauses.push(`${searchAttributes.status.name} = ${quote(filter.status)}`);
  if (filter.name) clauses.push(`${searchAttributes.name.name} = ${quote(filter.name)}`);
  const builds: ListedBuild[] = [];
  for await (const workflow of client.workflow.list({ query: clauses.join(' AND ') })) {
    const listed = fromSearchAttributes(workflow.typedSearchAttributes);
    if (listed) builds.push(listed);
  }
  return builds.sort((a, b) => a.created.localeCompare(b.created));
}

function fromSearchAttributes(attributes: TypedSearchAttributes): ListedBuild | undefined {
  const name = attributes.get(searchAttributes.name);
  const status = attributes.get(searchAttributes.status) as BuildStatus | undefined;
  const created = attributes.get(searchAttributes.created);
  // A workflow that has not run its first task yet has no attributes: not listed until it has.
  if (!name || !status || !created) return undefined;
  return {
    name,
    slug: attributes.get(searchAttributes.slug) ?? '',
    commit: {
      repo: attributes.get(searchAttributes.repo) ?? '',
      target_branch: attributes.get(searchAttributes.targetBranch) ?? '',
      pr: attributes.get(searchAttributes.pr) ?? null,
      git_commit: attributes.get(searchAttributes.commit) ?? '',
    },
    status,
    init_status: (attributes.get(searchAttributes.initStatus) ?? 'todo') as InitStatus,
    created: created.toISOString(),
    last_scaled: attributes.get(searchAttributes.lastScaled)?.toISOString() ?? null,
  };
}

/** The build name of `commit`, or undefined when GitHub sent values no build can have. */
function safeBuildName(commit: CommitInfo): string | undefined {
  try {
    return buildRef(commit).name;
  } catch (error) {
    if (error instanceof UnsafeCommitInfoError) return undefined;
    throw error;
  }
}

/** Asks every build matching `filter` (and the build of `newest`) to undeploy; returns their names. */
export async function undeployBuilds(
  client: Client,
  config: Config,
  filter: BuildFilter,
  newest?: CommitInfo,
): Promise<string[]> {
  const names = new Set((await listBuilds(client, config, filter)).map((build) => build.name));
  await Promise.all([...names].map((name) => sendBuildCommand(client, name, 'undeploy')));
  // Visibility lags: a build started a moment ago may not be listed yet. GitHub names the
  // newest commit of a closed PR or deleted branch, so its build is told directly, if it runs.
  const name = newest && safeBuildName(newest);
  if (name && !names.has(name)) {
    try {
      await sendBuildCommand(client, name, 'undeploy');
      names.add(name);
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) throw error;
    }
  }
  return [...names];
}
