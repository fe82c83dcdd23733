import { ApiException, type KubernetesObject } from '@kubernetes/client-node';
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { UnsafeCommitInfoError } from '../common/build';
import type { Config } from '../common/config';
import type {
  BuildRef,
  BuildRepoSettings,
  InitStatus,
  JobKind,
  JobOutcome,
  KubefilesMode,
  OrphanSweep,
} from '../common/types';
import { createCoordinationActivities } from './coordination';
import { adoptBuild, planOrphans } from './orphans';
import { GitHub } from '../common/github';
import type { CommitStatusState } from '../common/github-reports';
import { createReportDelivery, reportsOf, signalReporter, type ReportQueue } from './github-reports';
import { createWebhookRedelivery } from './webhook-redelivery';
import { count, observe } from './worker-metrics';
import { buildKustomization, KubefilesError, prepareKustomization, type Kustomization } from './kubefiles';
import { JOB_ATTEMPT_ANNOTATION, type BuildCluster, type WatchOptions } from '../common/kubernetes';

// Activities are thin: each turns one workflow step into calls on the Kubernetes module,
// and classifies failures (bad input or kubefiles are not retried; everything else is).

const HEARTBEAT_INTERVAL_MS = 5_000;

export function createActivities(
  config: Config,
  cluster: BuildCluster,
  github = new GitHub(config),
  queueReports: ReportQueue = signalReporter(config),
) {
  const steps = createStepActivities(config, cluster, queueReports);
  return {
    ...steps,
    ...transitionActivities(steps),
    ...createReportDelivery(config, github, (build) => cluster.readLog(build, 'initialize')),
    ...createWebhookRedelivery(config, github),
  };
}

export type BuildActivities = ReturnType<typeof createActivities>;

/** The single-step activities, which the transitions are made of. */
export type StepActivities = ReturnType<typeof createStepActivities>;

/**
 * A build's transitions in one round trip each (one activity task, one workflow task), made of
 * the idempotent single steps in the order the single-step workflow ran them, so that a retry
 * converges the same way. Builds started before the workflow used them still run the steps.
 */
export function transitionActivities(
  steps: Pick<
    StepActivities,
    | 'applyKubefiles'
    | 'reportCommitStatus'
    | 'deleteJobs'
    | 'setInitStatus'
    | 'scaleBuild'
    | 'releaseInitSlot'
    | 'waitForJob'
    | 'deleteBuild'
    | 'reportUndeployed'
  >,
) {
  /**
   * A fresh Job of `kind` marked with `attempt`. A Job already marked with it is kept: deleting
   * it would start that Job's work over.
   */
  const startMarkedJob = async (
    build: BuildRef,
    kind: JobKind,
    repo: BuildRepoSettings | undefined,
    attempt: string,
  ) => {
    await steps.deleteJobs(build.name, kind, attempt);
    await steps.applyKubefiles(build, kind, repo, { jobAttempt: attempt });
  };
  /** Step 3, holding a slot: a fresh init Job, `init-status=started`. */
  const startInit = async (build: BuildRef, repo: BuildRepoSettings | undefined, initAttempt: string) => {
    await startMarkedJob(build, 'initialize', repo, initAttempt);
    await steps.setInitStatus(build.name, 'started');
    await steps.reportCommitStatus(build, 'pending', 'initializing');
  };
  return {
    /** SPEC §3 step 1: the `deployment` objects, commit status pending. */
    async deployBuild(build: BuildRef, repo?: BuildRepoSettings): Promise<void> {
      await steps.applyKubefiles(build, 'deployment', repo);
      await steps.reportCommitStatus(build, 'pending', 'deployed, waiting to initialize');
    },

    /**
     * Step 3, holding a slot: a fresh init Job, `init-status=started`. A retry of the same
     * activity (its worker died after creating the Job) keeps the Job it created, marked with
     * the attempt: deleting it would start the initialization over (found by `npm run chaos`).
     */
    async startInitJob(build: BuildRef, repo?: BuildRepoSettings): Promise<void> {
      const { workflowExecution, activityId } = Context.current().info;
      await startInit(build, repo, `${workflowExecution?.runId}.${activityId}`);
    },

    /**
     * Step 3 and the wait for its outcome, in one round trip: the init Job of `initAttempt`
     * (named by the workflow, so that its next run after a continue-as-new keeps it too), then
     * watched until it ends.
     */
    async runInitJob(
      build: BuildRef,
      repo: BuildRepoSettings | undefined,
      initAttempt: string,
    ): Promise<JobOutcome> {
      await startInit(build, repo, initAttempt);
      return steps.waitForJob(build.name, 'initialize');
    },

    /**
     * Step 4 on success: `init-status=succeeded`, `stop` mode, status success, then started.
     * First, the init slot of the workflow `releaseInitSlotOf` goes back to the coordinator
     * (instead of a signal from the workflow): its Job is done, and the next build's Job need
     * not wait for this one's start. A retry releases it again, which the coordinator ignores.
     */
    async finishInitAndStart(
      build: BuildRef,
      scaledAt: string,
      repo?: BuildRepoSettings,
      { releaseInitSlotOf }: { releaseInitSlotOf?: string } = {},
    ): Promise<void> {
      if (releaseInitSlotOf !== undefined) await steps.releaseInitSlot(releaseInitSlotOf);
      await steps.setInitStatus(build.name, 'succeeded');
      await steps.applyKubefiles(build, 'stop', repo);
      await steps.reportCommitStatus(build, 'success', 'ready');
      await steps.applyKubefiles(build, 'start', repo, { after: 'stop' });
      await steps.scaleBuild(build.name, 1, scaledAt);
    },

    /**
     * One attempt of undeploy's cleanup Job and the wait for its outcome, in one round trip. The
     * first (`scaledAt`) scales the build down and deletes its init Job before. The Job is
     * marked with `cleanupAttempt`, named by the workflow: a retry of the activity keeps it.
     */
    async runCleanupJob(
      build: BuildRef,
      repo: BuildRepoSettings | undefined,
      cleanupAttempt: string,
      scaledAt?: string,
    ): Promise<JobOutcome> {
      if (scaledAt !== undefined) {
        await steps.scaleBuild(build.name, 0, scaledAt);
        await steps.deleteJobs(build.name, 'initialize');
      }
      await startMarkedJob(build, 'cleanup', repo, cleanupAttempt);
      return steps.waitForJob(build.name, 'cleanup');
    },

    /**
     * Undeploy's last step: every object of the build (the Deployment first, which takes its
     * pods down), then its GitHub deployment made inactive.
     */
    async removeBuild(build: BuildRef): Promise<void> {
      await steps.deleteBuild(build.name);
      await steps.reportUndeployed(build);
    },

    /** The `start` command: `start` mode, then 1 replica. */
    async startDeployment(build: BuildRef, scaledAt: string, repo?: BuildRepoSettings): Promise<void> {
      await steps.applyKubefiles(build, 'start', repo);
      await steps.scaleBuild(build.name, 1, scaledAt);
    },

    /** The `stop` command: 0 replicas, then `stop` mode. */
    async stopDeployment(build: BuildRef, scaledAt: string, repo?: BuildRepoSettings): Promise<void> {
      await steps.scaleBuild(build.name, 0, scaledAt);
      await steps.applyKubefiles(build, 'stop', repo);
    },
  };
}

function createStepActivities(config: Config, cluster: BuildCluster, queueReports: ReportQueue) {
  const rendered = renderCache(config);
  const report = async (build: BuildRef, state: CommitStatusState | 'inactive', description: string) => {
    const reports = reportsOf(config, build, state, description);
    if (reports.length) await queueReports(reports);
  };
  const coordination = createCoordinationActivities(config);
  return {
    ...coordination,

    /**
     * Deletes the objects of the builds that have no running workflow, and adopts those that
     * never had one and can be (see `planOrphans`).
     */
    async sweepOrphans(graceSeconds: number): Promise<OrphanSweep> {
      const { client } = Context.current();
      const plan = await planOrphans(client, config, cluster, graceSeconds);
      const adopted: string[] = [];
      for (const build of plan.adopt)
        if (await adoptBuild(client, config, build)) adopted.push(build.state.name);
      const swept = plan.sweep.map(({ name }) => name);
      let objects = 0;
      for (const name of swept) objects += await cluster.deleteBuild(name, { everyKind: true });
      if (objects) {
        log.warn('deleted the objects of builds without a running workflow', { builds: plan.sweep, objects });
        count('orphanObjectsDeleted', objects);
      }
      if (adopted.length) {
        log.warn('adopted builds deployed without a workflow', { builds: adopted });
        count('buildsAdopted', adopted.length);
      }
      return { builds: swept, objects, adopted };
    },

    /**
     * Reports the build on its commit, and as a GitHub deployment when those are on: queued with
     * the GitHub reporter, so that GitHub refusing or failing never holds up or fails the build.
     */
    async reportCommitStatus(build: BuildRef, state: CommitStatusState, description: string): Promise<void> {
      await report(build, state, description);
    },

    /** The build is gone: its GitHub deployment, if any, becomes inactive. */
    async reportUndeployed(build: BuildRef): Promise<void> {
      await report(build, 'inactive', 'undeployed');
    },

    /**
     * Applies the objects of `mode`, rendered with `repo`, the settings the build was created
     * with (absent for builds of release v1). `after`: the mode the same activity applied just
     * before; only the objects that differ from its objects are applied (runboat's `start` and
     * `stop` modes are mostly the same objects). `jobAttempt` marks the Jobs (`runInitJob`,
     * `runCleanupJob`).
     */
    async applyKubefiles(
      build: BuildRef,
      mode: KubefilesMode,
      repo?: BuildRepoSettings,
      { after, jobAttempt }: { after?: KubefilesMode; jobAttempt?: string } = {},
    ): Promise<void> {
      try {
        let objects = await rendered(build, mode, repo);
        if (after) {
          const applied = new Set(
            (await rendered(build, after, repo)).map((object) => JSON.stringify(object)),
          );
          objects = objects.filter((object) => !applied.has(JSON.stringify(object)));
        }
        if (jobAttempt !== undefined) objects = objects.map((object) => markAttempt(object, jobAttempt));
        if (objects.length) await cluster.apply(objects, buildValues(build, objects, jobAttempt));
      } catch (error) {
        throw nonRetryableIfPermanent(error, currentAttempt());
      }
    },

    async scaleBuild(name: string, replicas: number, at: string): Promise<void> {
      await cluster.scale(name, replicas, new Date(at));
    },

    async setInitStatus(name: string, status: InitStatus): Promise<void> {
      await cluster.setInitStatus(name, status);
    },

    /** Except the Jobs marked with `keepAttempt` (see `startInitJob`). */
    async deleteJobs(name: string, kind: JobKind, keepAttempt?: string): Promise<void> {
      await cluster.deleteJobs(name, kind, keepAttempt);
    },

    /** Best effort: a build whose log cannot be kept still fails with its reason. */
    async keepInitLog(name: string): Promise<void> {
      try {
        if (!(await cluster.keepInitLog(name))) log.warn('no init log to keep', { build: name });
      } catch (error) {
        log.warn('could not keep the init log', { build: name, error: String(error) });
      }
    },

    async deleteBuild(name: string): Promise<void> {
      await cluster.deleteBuild(name);
    },

    async waitForJob(name: string, kind: JobKind): Promise<JobOutcome> {
      const { outcome, ranSeconds } = await withHeartbeats((options) =>
        cluster.waitForJob(name, kind, options),
      );
      if (ranSeconds !== undefined)
        observe('jobSeconds', ranSeconds, { kind, outcome: outcome.succeeded ? 'succeeded' : 'failed' });
      return outcome;
    },

    async waitForReadyReplicas(name: string, replicas: number): Promise<void> {
      return withHeartbeats((options) => cluster.waitForReadyReplicas(name, replicas, options));
    },
  };
}

const RENDER_CACHE_SIZE = 2_000;

/**
 * A build renders the same objects in a mode every time (the configuration is read once per
 * worker), and a render costs templates, a copy and kustomize: keep the most recent renders, by
 * build and mode, and by what kustomize is given (runboat's `start` and `stop` modes render the
 * same kustomization: kustomize builds it once).
 */
function renderCache(config: Config) {
  const byMode = new Map<string, Promise<KubernetesObject[]>>();
  const byKustomization = new Map<string, Promise<KubernetesObject[]>>();
  const build = async (kustomization: Kustomization) =>
    cached(byKustomization, kustomization.key, () => buildKustomization(config, kustomization));
  return (ref: BuildRef, mode: KubefilesMode, repo?: BuildRepoSettings): Promise<KubernetesObject[]> =>
    cached(byMode, JSON.stringify([ref, mode, repo]), async () =>
      build(await prepareKustomization(config, ref, mode, repo)),
    );
}

/** `cache`'s promise for `key`, made by `make` when absent; failures are not kept. */
function cached<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let value = cache.get(key);
  if (!value) {
    value = make();
    value.catch(() => cache.delete(key));
    cache.set(key, value);
    if (cache.size > RENDER_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  }
  return value;
}

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

/** The suffix kustomize's generators give a ConfigMap or Secret name: a hash of its content. */
const GENERATED_NAME_SUFFIX = /-([2456789bcdfghkmt]{10})$/;

/**
 * What tells `build`'s objects from those another build of the same kubefiles renders: its
 * name, slug and commit, its PR number where it is a whole value (an annotation), the hash
 * suffixes of generated names (their content holds the build's values), and the attempt its
 * Jobs are marked with (an annotation: each init Job was a shape of its own, dry-run every time).
 */
export function buildValues(build: BuildRef, objects: KubernetesObject[], jobAttempt?: string): string[] {
  const { commit } = build;
  const suffixes = objects
    .filter(({ kind }) => kind === 'ConfigMap' || kind === 'Secret')
    .flatMap(({ metadata }) => GENERATED_NAME_SUFFIX.exec(metadata?.name ?? '')?.[1] ?? []);
  return [
    build.slug,
    build.name,
    commit.git_commit,
    ...(commit.pr === null ? [] : [`"${commit.pr}"`]),
    ...suffixes,
    ...(jobAttempt === undefined ? [] : [jobAttempt]),
  ];
}

/** A copy of a Job marked with the attempt that created it; other objects as they are. */
export function markAttempt(object: KubernetesObject, attempt: string): KubernetesObject {
  if (object.kind !== 'Job') return object;
  const annotations = { ...object.metadata?.annotations, [JOB_ATTEMPT_ANNOTATION]: attempt };
  return { ...object, metadata: { ...object.metadata, annotations } };
}

/**
 * Attempts after which Kubernetes refusing the objects is their fault: a restarting
 * kube-apiserver refuses valid objects for a while too (422 "failed to allocate IP: allocator
 * not ready", found by `npm run chaos`), which must not fail the build.
 */
const REFUSALS_BEFORE_PERMANENT = 3;

/**
 * `error` as a failure retrying cannot fix (bad kubefiles or commit info at once; objects
 * Kubernetes refuses once it has refused them REFUSALS_BEFORE_PERMANENT attempts in a row),
 * or as it was. `attempt`: the activity's attempt, 1 for the first.
 */
export function nonRetryableIfPermanent(error: unknown, attempt: number): unknown {
  if (error instanceof KubefilesError || error instanceof UnsafeCommitInfoError) {
    return ApplicationFailure.nonRetryable(error.message, error.name);
  }
  if (error instanceof ApiException && [400, 422].includes(error.code)) {
    const body = typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
    const message = `Kubernetes refused the build's objects: ${body}`;
    return attempt < REFUSALS_BEFORE_PERMANENT
      ? ApplicationFailure.retryable(message, 'KubernetesRefused')
      : ApplicationFailure.nonRetryable(message, 'KubefilesError');
  }
  return error;
}

/** The running activity's attempt; outside one (a direct call), as if the last. */
function currentAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return Infinity;
  }
}
