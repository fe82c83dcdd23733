import type { Client } from '@temporalio/client';
import { buildRef } from '../common/build';
import { findRepoSettings, type Config } from '../common/config';
import { logger } from '../common/logger';
import type { BuildCommand, BuildRef, BuildSnapshot, CommitInfo } from '../common/types';
import {
  buildStateQuery,
  buildWorkflowId,
  commandSignals,
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
  return build;
}

export function lifecycleSettings(config: Config): LifecycleSettings {
  return {
    maxInitializing: config.maxInitializing,
    initTimeoutSeconds: config.initTimeoutSeconds,
    noCleanupJob: config.noCleanupJob,
  };
}

export async function sendBuildCommand(client: Client, name: string, command: BuildCommand): Promise<void> {
  await client.workflow.getHandle(buildWorkflowId(name)).signal(commandSignals[command]);
}

export async function getBuildState(client: Client, name: string): Promise<BuildSnapshot> {
  return client.workflow.getHandle(buildWorkflowId(name)).query(buildStateQuery);
}
