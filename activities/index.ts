import { ApiException } from '@kubernetes/client-node';
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { UnsafeCommitInfoError } from '../common/build';
import type { Config } from '../common/config';
import type { BuildRef, InitStatus, JobKind, JobOutcome, KubefilesMode } from '../common/types';
import { createCoordinationActivities } from './coordination';
import { GitHub, type CommitStatusState } from './github';
import { KubefilesError, renderKubefiles } from './kubefiles';
import type { BuildCluster, WatchOptions } from './kubernetes';

// Activities are thin: each turns one workflow step into calls on the Kubernetes module,
// and classifies failures (bad input or kubefiles are not retried; everything else is).

const HEARTBEAT_INTERVAL_MS = 5_000;

export function createActivities(config: Config, cluster: BuildCluster, github = new GitHub(config)) {
  return {
    ...createCoordinationActivities(config),

    /** Reports the build on its commit; a failure to post is logged, never fails the build. */
    async reportCommitStatus(build: BuildRef, state: CommitStatusState, description: string): Promise<void> {
      if (config.disableCommitStatuses) return;
      const targetUrl = `${config.baseUrl}/builds/${build.name}?live`;
      try {
        await github.postCommitStatus(build.commit, { state, description, targetUrl });
      } catch (error) {
        log.warn('could not post commit status', { build: build.name, state, error: String(error) });
      }
    },

    async applyKubefiles(build: BuildRef, mode: KubefilesMode): Promise<void> {
      try {
        await cluster.apply(await renderKubefiles(config, build, mode));
      } catch (error) {
        throw nonRetryableIfPermanent(error);
      }
    },

    async scaleBuild(name: string, replicas: number, at: string): Promise<void> {
      await cluster.scale(name, replicas, new Date(at));
    },

    async setInitStatus(name: string, status: InitStatus): Promise<void> {
      await cluster.setInitStatus(name, status);
    },

    async deleteJobs(name: string, kind: JobKind): Promise<void> {
      await cluster.deleteJobs(name, kind);
    },

    async deleteBuild(name: string): Promise<void> {
      await cluster.deleteBuild(name);
    },

    async waitForJob(name: string, kind: JobKind): Promise<JobOutcome> {
      return withHeartbeats((options) => cluster.waitForJob(name, kind, options));
    },

    async waitForReadyReplicas(name: string, replicas: number): Promise<void> {
      return withHeartbeats((options) => cluster.waitForReadyReplicas(name, replicas, options));
    },
  };
}

export type BuildActivities = ReturnType<typeof createActivities>;

/**
 * Runs a watch while heartbeating the last resourceVersion seen, so that a retry after a worker
 * crash resumes the watch where it was, and a cancelled activity stops watching.
 */
async function withHeartbeats<T>(watch: (options: WatchOptions) => Promise<T>): Promise<T> {
  const context = Context.current();
  const resumed = context.info.heartbeatDetails as { resourceVersion?: string } | undefined;
  let resourceVersion = resumed?.resourceVersion;
  const beat = () => context.heartbeat({ resourceVersion });
  const timer = setInterval(beat, HEARTBEAT_INTERVAL_MS);
  try {
    beat();
    return await watch({
      signal: context.cancellationSignal,
      resourceVersion,
      onProgress(version) {
        resourceVersion = version;
      },
    });
  } finally {
    clearInterval(timer);
  }
}

function nonRetryableIfPermanent(error: unknown): unknown {
  if (error instanceof KubefilesError || error instanceof UnsafeCommitInfoError) {
    return ApplicationFailure.nonRetryable(error.message, error.name);
  }
  if (error instanceof ApiException && [400, 422].includes(error.code)) {
    const body = typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
    return ApplicationFailure.nonRetryable(
      `Kubernetes refused the build's objects: ${body}`,
      'KubefilesError',
    );
  }
  return error;
}
