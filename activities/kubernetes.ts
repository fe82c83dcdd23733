import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  Watch,
  type KubernetesObject,
  type V1Deployment,
  type V1Job,
} from '@kubernetes/client-node';
import type { Config } from '../common/config';
import type { InitStatus, JobKind, JobOutcome } from '../common/types';

// All Kubernetes access goes through this module. Every method is idempotent, so that an
// activity retried after a crash at any point converges to the same state.

export const FIELD_MANAGER = 'runboat-temporal';

/** ConfigMaps hold at most 1 MiB: logs are cut to their last 512 KiB. */
const MAX_LOG_BYTES = 512 * 1024;

const podTime = (pod: { metadata?: { creationTimestamp?: Date } }) =>
  new Date(pod.metadata?.creationTimestamp ?? 0).getTime();

/** What the orchestrator deletes when a build goes: every kind the kubefiles contract produces. */
/** On an init Job: the activity attempt that created it (`startInitJob`). */
export const INIT_ATTEMPT_ANNOTATION = 'runboat/init-attempt';

export const BUILD_OBJECT_KINDS = [
  { apiVersion: 'apps/v1', kind: 'Deployment' },
  { apiVersion: 'batch/v1', kind: 'Job' },
  { apiVersion: 'v1', kind: 'Service' },
  { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress' },
  { apiVersion: 'v1', kind: 'PersistentVolumeClaim' },
  { apiVersion: 'v1', kind: 'ConfigMap' },
  { apiVersion: 'v1', kind: 'Secret' },
  { apiVersion: 'v1', kind: 'Pod' },
] as const;

const isStatus = (error: unknown, ...codes: number[]) =>
  error instanceof ApiException && codes.includes(error.code);

export interface WatchOptions {
  signal: AbortSignal;
  /** Resume a watch where an earlier attempt left it (from its heartbeat). */
  resourceVersion?: string;
  /** Called with the newest resourceVersion seen, for the caller to heartbeat. */
  onProgress(resourceVersion: string): void;
}

/** The build namespace of the cluster KUBECONFIG (or the in-cluster account) points at. */
export function buildCluster(config: Pick<Config, 'buildNamespace'>): BuildCluster {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return new BuildCluster(kubeConfig, config.buildNamespace);
}

export class BuildCluster {
  private readonly objects: KubernetesObjectApi;
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;

  constructor(
    kubeConfig: KubeConfig,
    readonly namespace: string,
  ) {
    this.objects = KubernetesObjectApi.makeApiClient(kubeConfig);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.watcher = new Watch(kubeConfig);
  }

  /**
   * Server-side applies `objects`, after a server-side dry run of all of them, so that a broken
   * kubefile is refused before anything is created or changed.
   */
  async apply(objects: KubernetesObject[]): Promise<void> {
    for (const dryRun of ['All', undefined]) {
      await Promise.all(
        objects.map((object) =>
          this.objects.patch(object, undefined, dryRun, FIELD_MANAGER, true, PatchStrategy.ServerSideApply),
        ),
      );
    }
  }

  /** Scaling a build whose Deployment is already gone to 0 is done, not an error. */
  async scale(build: string, replicas: number, at: Date): Promise<void> {
    await this.patchDeployment(
      build,
      replicas === 0,
      { 'runboat/last-scaled': at.toISOString() },
      { replicas },
    );
  }

  async setInitStatus(build: string, status: InitStatus): Promise<void> {
    await this.patchDeployment(build, false, { 'runboat/init-status': status });
  }

  /**
   * Deletes the build's jobs of one kind (and, through the garbage collector, their pods), but
   * those marked with the init attempt `keepAttempt`.
   */
  async deleteJobs(build: string, kind: JobKind, keepAttempt?: string): Promise<void> {
    await this.deleteAll(
      'batch/v1',
      'Job',
      `runboat/build=${build},runboat/job-kind=${kind}`,
      (job) =>
        keepAttempt === undefined || job.metadata?.annotations?.[INIT_ATTEMPT_ANNOTATION] !== keepAttempt,
    );
  }

  /** Deletes every object labelled with the build; returns how many were still there. */
  async deleteBuild(build: string): Promise<number> {
    let deleted = 0;
    for (const { apiVersion, kind } of BUILD_OBJECT_KINDS) {
      deleted += await this.deleteAll(apiVersion, kind, `runboat/build=${build}`);
    }
    return deleted;
  }

  async listBuildObjects(build: string): Promise<KubernetesObject[]> {
    const lists = await Promise.all(
      BUILD_OBJECT_KINDS.map(async ({ apiVersion, kind }) => {
        const { items } = await this.list(apiVersion, kind, `runboat/build=${build}`);
        // List items come without their kind.
        return items.map((item) => ({ ...item, apiVersion, kind }));
      }),
    );
    return lists.flat();
  }

  /** Waits, by watching, until the build's job of `kind` succeeds or fails. */
  async waitForJob(build: string, kind: JobKind, options: WatchOptions): Promise<JobOutcome> {
    const selector = `runboat/build=${build},runboat/job-kind=${kind}`;
    return this.watchUntil<V1Job, JobOutcome>('batch/v1', 'Job', selector, options, (type, job) =>
      type === 'DELETED' ? { succeeded: false, reason: `the ${kind} job was deleted` } : jobOutcome(job),
    );
  }

  /** Waits, by watching, until the build's Deployment reports `replicas` ready replicas. */
  async waitForReadyReplicas(build: string, replicas: number, options: WatchOptions): Promise<void> {
    await this.watchUntil<V1Deployment, true>(
      'apps/v1',
      'Deployment',
      `runboat/build=${build}`,
      options,
      (type, d) => (type !== 'DELETED' && (d.status?.readyReplicas ?? 0) === replicas ? true : undefined),
    );
  }

  /**
   * The log of the build's newest init-job pod or (kind `deployment`) Odoo pod; for the init
   * log, the copy kept when it failed once the pod is gone. Undefined when there is none.
   */
  async readLog(build: string, kind: 'initialize' | 'deployment'): Promise<string | undefined> {
    const selector = kind === 'initialize' ? `runboat/job-kind=initialize` : '!runboat/job-kind';
    const { items } = await this.core.listNamespacedPod({
      namespace: this.namespace,
      labelSelector: `runboat/build=${build},${selector}`,
    });
    const newest = items.sort((a, b) => podTime(b) - podTime(a))[0];
    if (newest?.metadata?.name && newest.status?.phase !== 'Pending') {
      const log = await this.core
        .readNamespacedPodLog({
          name: newest.metadata.name,
          namespace: this.namespace,
          container: newest.spec?.containers[0]?.name,
          limitBytes: MAX_LOG_BYTES,
        })
        // The node's kubelet may be unreachable (or simulated, without logs): use the kept copy.
        // A refusal is not that: a Role missing pods/log must show, not fall back silently.
        .catch((error: unknown) => (isStatus(error, 401, 403) ? Promise.reject(error) : undefined));
      if (log !== undefined) return log;
    }
    if (kind === 'deployment') return undefined;
    const kept = await this.core
      .readNamespacedConfigMap({ name: `${build}-init-log`, namespace: this.namespace })
      .catch((error: unknown) => (isStatus(error, 404) ? undefined : Promise.reject(error)));
    return kept?.data?.log;
  }

  /** Keeps the init log in a ConfigMap of the build, so that it outlives the job's pod. */
  async keepInitLog(build: string): Promise<boolean> {
    const log = await this.readLog(build, 'initialize');
    if (log === undefined) return false;
    await this.apply([
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: `${build}-init-log`,
          namespace: this.namespace,
          labels: { 'runboat/build': build },
        },
        data: { log: log.slice(-MAX_LOG_BYTES) },
      } as KubernetesObject,
    ]);
    return true;
  }

  private async patchDeployment(
    build: string,
    missingIsDone: boolean,
    annotations: Record<string, string>,
    spec?: { replicas: number },
  ): Promise<void> {
    const { items } = await this.list('apps/v1', 'Deployment', `runboat/build=${build}`);
    if (items.length === 0 && missingIsDone) return;
    if (items.length !== 1)
      throw new Error(`expected one Deployment labelled runboat/build=${build}, found ${items.length}`);
    const { name, namespace } = items[0].metadata ?? {};
    await this.objects.patch(
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace, annotations }, spec },
      undefined,
      undefined,
      FIELD_MANAGER,
      undefined,
      PatchStrategy.MergePatch,
    );
  }

  private list(apiVersion: string, kind: string, labelSelector: string) {
    return this.objects.list(
      apiVersion,
      kind,
      this.namespace,
      undefined,
      undefined,
      undefined,
      undefined,
      labelSelector,
    );
  }

  private async deleteAll(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    select: (item: KubernetesObject) => boolean = () => true,
  ): Promise<number> {
    const items = (await this.list(apiVersion, kind, labelSelector)).items.filter(select);
    for (const item of items) {
      try {
        await this.objects.delete(
          { apiVersion, kind, metadata: item.metadata },
          undefined,
          undefined,
          undefined,
          undefined,
          'Background',
        );
      } catch (error) {
        if (!isStatus(error, 404)) throw error;
      }
    }
    return items.length;
  }

  /**
   * Lists, then watches from the list's resourceVersion until `decide` returns a value for one of
   * the selected objects. Survives the server closing the watch and 410 Gone (relists).
   */
  private async watchUntil<T extends KubernetesObject, R>(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    options: WatchOptions,
    decide: (type: string, object: T) => R | undefined,
  ): Promise<R> {
    let resourceVersion = options.resourceVersion;
    for (;;) {
      options.signal.throwIfAborted();
      if (!resourceVersion) {
        const list = await this.list(apiVersion, kind, labelSelector);
        for (const item of list.items) {
          const decided = decide('ADDED', item as T);
          if (decided !== undefined) return decided;
        }
        resourceVersion = list.metadata?.resourceVersion;
      }
      const outcome = await this.watchOnce(apiVersion, kind, labelSelector, resourceVersion, options, decide);
      if ('decided' in outcome) return outcome.decided;
      resourceVersion = outcome.resourceVersion;
    }
  }

  private watchOnce<T extends KubernetesObject, R>(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    from: string | undefined,
    options: WatchOptions,
    decide: (type: string, object: T) => R | undefined,
  ): Promise<{ decided: R } | { resourceVersion: string | undefined }> {
    const group = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const path = `${group}/namespaces/${this.namespace}/${kind.toLowerCase()}s`;
    let resourceVersion = from;
    return new Promise((resolve, reject) => {
      let controller: AbortController | undefined;
      let settled = false;
      // Aborting the request makes the client report an AbortError through `done`: settle first.
      const finish = (result: { decided: R } | { resourceVersion: string | undefined } | Error) => {
        if (settled) return;
        settled = true;
        options.signal.removeEventListener('abort', onAbort);
        if (result instanceof Error) reject(result);
        else resolve(result);
        controller?.abort();
      };
      const onAbort = () =>
        finish(options.signal.reason instanceof Error ? options.signal.reason : new Error('aborted'));
      options.signal.addEventListener('abort', onAbort, { once: true });
      const params = { labelSelector, resourceVersion: from, allowWatchBookmarks: true, timeoutSeconds: 300 };
      this.watcher
        .watch(
          path,
          params,
          (type: string, object: T & { code?: number }) => {
            if (type === 'ERROR') {
              // 410 Gone: our resourceVersion is too old; relist.
              finish({ resourceVersion: object.code === 410 ? undefined : resourceVersion });
              return;
            }
            resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
            if (resourceVersion) options.onProgress(resourceVersion);
            if (type === 'BOOKMARK') return;
            const decided = decide(type, object);
            if (decided !== undefined) finish({ decided });
          },
          (error: unknown) => finish(error ? toError(error) : { resourceVersion }),
        )
        .then(
          (started) => {
            controller = started;
            if (settled) started.abort();
          },
          (error: unknown) => finish(toError(error)),
        );
    });
  }
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

export function jobOutcome(job: V1Job): JobOutcome | undefined {
  const condition = (type: string) =>
    job.status?.conditions?.find((c) => c.type === type && c.status === 'True');
  if (condition('Complete')) return { succeeded: true };
  const failed = condition('Failed');
  if (failed)
    return {
      succeeded: false,
      reason: [failed.reason, failed.message].filter(Boolean).join(': ') || 'failed',
    };
  return undefined;
}
