import { createHash } from 'node:crypto';
import {
  ApiException,
  ApisApi,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  Watch,
  type KubernetesObject,
  type V1APIResource,
  type V1Deployment,
  type V1Job,
} from '@kubernetes/client-node';
import type { Config } from './config';
import type { InitStatus, JobKind, JobOutcome } from './types';
import {
  keptAliveRequests,
  SOCKET_TIMEOUT_MS,
  withKeepAlive,
  withSilenceLimit,
  type KeptAliveRequests,
  type RawResponse,
} from './kube-keep-alive';

// All Kubernetes access goes through this module. Every method is idempotent, so that an
// activity retried after a crash at any point converges to the same state.

export const FIELD_MANAGER = 'runboat-temporal';

/** ConfigMaps hold at most 1 MiB: logs are cut to their last 512 KiB. */
const MAX_LOG_BYTES = 512 * 1024;

const podTime = (pod: { metadata?: { creationTimestamp?: Date } }) =>
  new Date(pod.metadata?.creationTimestamp ?? 0).getTime();

/**
 * On an init or cleanup Job: the attempt that created it (`runInitJob`, `runCleanupJob`). Named
 * when only init Jobs had it; Jobs of running builds carry it.
 */
export const JOB_ATTEMPT_ANNOTATION = 'runboat/init-attempt';

/**
 * The kinds the kubefiles contract produces, deleted first and in this order when a build goes
 * (its workload before what the workload uses); every other kind follows (`objectKinds`).
 */
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

/** How long kube-apiserver keeps a watch open before ending it (and the worker watching again). */
export const WATCH_TIMEOUT_SECONDS = 300;

/** Objects per page when listing every build's objects (the orphan sweep). */
export const LIST_PAGE_SIZE = 500;

/** How calls are made; tests shorten these. */
export interface CallOptions {
  /** How long a call may wait in silence before it fails (SOCKET_TIMEOUT_MS). */
  socketTimeoutMs?: number;
  /**
   * How long the server keeps a watch open (WATCH_TIMEOUT_SECONDS); a watch silent that long
   * plus `socketTimeoutMs` fails.
   */
  watchTimeoutSeconds?: number;
  /** Objects per page of a list of every build's objects (LIST_PAGE_SIZE). */
  listPageSize?: number;
}

/** The finalizer runboat's own deployment.yaml puts on the Deployment. */
const RUNBOAT_CLEANUP_FINALIZER = 'runboat/cleanup';

/**
 * A list's items with their metadata only: kube-apiserver encodes, and the worker parses, no spec
 * or status (a Pod's or a Deployment's are most of it).
 */
const METADATA_LIST = 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json';

/** Enough for every object of a few thousand builds, at about 100 bytes each. */
const ACCEPTED_OBJECTS_KEPT = 50_000;

/**
 * An object's hash once each of `buildValues` (longest first) is blanked out by a placeholder of
 * its length: equal for the same object of two builds of the same kubefiles whose values have
 * the same lengths. Their characters are of one class by construction (a build's name and slug
 * are DNS labels, its commit 40 hex digits, a generated name's suffix kustomize's alphabet), so
 * the server validates the two alike.
 */
export function objectShape(object: KubernetesObject, buildValues: readonly string[]): string {
  // Longest first: a build's name holds its slug, say.
  const values = [...new Set(buildValues)].filter(Boolean).sort((a, b) => b.length - a.length);
  let text = JSON.stringify(object);
  for (const value of values) text = text.split(value).join('\u0000'.repeat(value.length));
  return createHash('sha256').update(text).digest('base64');
}

const isStatus = (error: unknown, ...codes: number[]) =>
  error instanceof ApiException && codes.includes(error.code);

export interface ObjectKind {
  apiVersion: string;
  kind: string;
  /** Named by RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: a refusal to list or delete it is an error. */
  required?: boolean;
}

/** What API discovery found (`BuildCluster.objectKinds`, `BuildCluster.kindsInUse`), and when. */
interface Discovery {
  at: number;
  kinds: Promise<ObjectKind[]>;
  inUse: Promise<ObjectKind[]>;
}

/** How long a worker trusts what discovery said: a CRD installed since is seen within that. */
const DISCOVERY_TTL_MS = 5 * 60_000;

/** Kinds no kubefile creates that the cluster keeps plenty of: never listed. */
const NEVER_BUILD_KINDS = new Set(['v1/Event', 'events.k8s.io/v1/Event']);

/** API discovery: the resources served under a group version (the object API's own lookup). */
class ResourceDiscovery extends KubernetesObjectApi {
  async resources(apiVersion: string): Promise<V1APIResource[]> {
    delete this.apiVersionResourceCache[apiVersion];
    await this.resource(apiVersion, '');
    return this.apiVersionResourceCache[apiVersion]?.resources ?? [];
  }

  /** The object's URL path, as the object API calls it. */
  objectPath(object: KubernetesObject): Promise<string> {
    return this.specUriPath(object, 'patch');
  }

  /** The URL path of the objects of a kind in `namespace`. */
  collectionPath(apiVersion: string, kind: string, namespace: string): Promise<string> {
    return this.specUriPath({ apiVersion, kind, metadata: { namespace } }, 'list');
  }
}

export interface WatchOptions {
  signal: AbortSignal;
  /** Resume a watch where an earlier attempt left it (from its heartbeat). */
  resourceVersion?: string;
  /** Called with the newest resourceVersion seen, for the caller to heartbeat. */
  onProgress(resourceVersion: string): void;
}

/** RUNBOAT_DEPLOYMENT_RESOURCE_TYPES names types the cluster does not serve: a configuration error. */
export class UnknownResourceTypesError extends Error {
  constructor(readonly types: string[]) {
    super(`RUNBOAT_DEPLOYMENT_RESOURCE_TYPES names types the cluster does not serve: ${types.join(', ')}`);
  }
}

/** The build namespace of the cluster KUBECONFIG (or the in-cluster account) points at. */
export function buildCluster(
  config: Pick<Config, 'buildNamespace' | 'deploymentResourceTypes'>,
): BuildCluster {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return new BuildCluster(kubeConfig, config.buildNamespace, config.deploymentResourceTypes);
}

export class BuildCluster {
  private readonly objects: KubernetesObjectApi;
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;
  private readonly watchTimeoutSeconds: number;
  private readonly listPageSize: number;
  private readonly discovery: ResourceDiscovery;
  private readonly groups: ApisApi;
  /** Server-side applies without the generated clients' models (common/kube-keep-alive.ts). */
  private readonly requests?: KeptAliveRequests;
  private discovered?: Discovery;
  /** The kinds of the objects this process applied (`apiVersion/kind`). */
  private readonly appliedKinds = new Set<string>();
  /** `apiVersion/kind` of the kinds whose collection delete was refused (`deleteCollection`). */
  private readonly collectionDeleteRefused = new Set<string>();
  /** Hashes of objects the server accepted from this process, least recently applied first. */
  private readonly accepted = new Set<string>();
  /**
   * The dry runs of applies under way, by object hash: whether the server accepted the object.
   * A burst's builds all arrive before the first is applied; each would dry-run the same shapes.
   */
  private readonly proving = new Map<string, Promise<boolean>>();
  /** The Deployment this process applied for each build, least recently applied first. */
  private readonly deploymentNames = new Map<string, string>();

  /**
   * `deploymentResourceTypes`: runboat's RUNBOAT_DEPLOYMENT_RESOURCE_TYPES, kubectl resource
   * names (`deployment`, `pvc`, `networkpolicies.networking.k8s.io`) that the kubefiles create.
   */
  constructor(
    kubeConfig: KubeConfig,
    readonly namespace: string,
    private readonly deploymentResourceTypes: readonly string[] = [],
    {
      socketTimeoutMs = SOCKET_TIMEOUT_MS,
      watchTimeoutSeconds = WATCH_TIMEOUT_SECONDS,
      listPageSize = LIST_PAGE_SIZE,
    }: CallOptions = {},
  ) {
    this.listPageSize = listPageSize;
    const reused = withKeepAlive(kubeConfig, socketTimeoutMs);
    this.requests = keptAliveRequests(kubeConfig, socketTimeoutMs);
    this.objects = KubernetesObjectApi.makeApiClient(reused);
    this.core = reused.makeApiClient(CoreV1Api);
    this.watchTimeoutSeconds = watchTimeoutSeconds;
    this.watcher = new Watch(withSilenceLimit(kubeConfig, watchTimeoutSeconds * 1000 + socketTimeoutMs));
    this.discovery = reused.makeApiClient(ResourceDiscovery);
    this.groups = reused.makeApiClient(ApisApi);
  }

  /**
   * Server-side applies `objects`, after a server-side dry run of those it has not applied
   * before, so that a broken kubefile is refused before anything is created or changed. An
   * object the server accepted as it is needs no second dry run: a build's modes share most
   * objects (generators, the PVC), and a dry run is a full API call. Nor does one that differs
   * from an accepted one only by `buildValues`, what tells a build's objects from another
   * build's of the same kubefiles (see `objectShape`): a new build is then one round trip,
   * not two. Nor does one whose shape another apply is dry-running: its acceptance is awaited.
   */
  async apply(objects: KubernetesObject[], buildValues: readonly string[] = []): Promise<void> {
    const hashes = objects.map((object) => objectShape(object, buildValues));
    /** The dry runs this apply makes that others may await, until its objects are applied. */
    const proofs = new Map<string, Promise<boolean>>();
    try {
      await Promise.all(objects.map((object, i) => this.proveShape(object, hashes[i], proofs)));
      await Promise.all(objects.map((object) => this.serverSideApply(object)));
    } finally {
      for (const [hash, proof] of proofs) if (this.proving.get(hash) === proof) this.proving.delete(hash);
    }
    for (const hash of hashes) {
      this.accepted.delete(hash);
      this.accepted.add(hash);
    }
    for (const hash of this.accepted) {
      if (this.accepted.size <= ACCEPTED_OBJECTS_KEPT) break;
      this.accepted.delete(hash);
    }
    for (const { apiVersion, kind } of objects) this.appliedKinds.add(`${apiVersion}/${kind}`);
    for (const { kind, metadata } of objects) {
      const build = metadata?.labels?.['runboat/build'];
      if (kind !== 'Deployment' || !build || !metadata?.name) continue;
      this.deploymentNames.delete(build);
      this.deploymentNames.set(build, metadata.name);
      if (this.deploymentNames.size > ACCEPTED_OBJECTS_KEPT) {
        this.deploymentNames.delete(this.deploymentNames.keys().next().value as string);
      }
    }
  }

  /**
   * Dry-runs `object` unless its shape (`hash`) is accepted, or another apply's dry run of that
   * shape is accepted. Refused there, it is dry-run all the same: the refusal this apply reports
   * must name its own object.
   */
  private async proveShape(
    object: KubernetesObject,
    hash: string,
    proofs: Map<string, Promise<boolean>>,
  ): Promise<void> {
    if (this.accepted.has(hash)) return;
    const underWay = this.proving.get(hash);
    if (underWay && (await underWay)) return;
    const dryRun = this.serverSideApply(object, 'All');
    if (!this.proving.has(hash)) {
      const proof = dryRun.then(
        () => true,
        () => false,
      );
      this.proving.set(hash, proof);
      proofs.set(hash, proof);
    }
    await dryRun;
  }

  /** Fails with the ApiException the object API would throw (`nonRetryableIfPermanent` reads it). */
  private async serverSideApply(object: KubernetesObject, dryRun?: 'All'): Promise<void> {
    if (!this.requests) {
      await this.objects.patch(object, undefined, dryRun, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
      return;
    }
    const query = new URLSearchParams({ fieldManager: FIELD_MANAGER, force: 'true' });
    if (dryRun) query.set('dryRun', dryRun);
    const path = `${await this.discovery.objectPath(object)}?${query}`;
    failUnlessAccepted(
      await this.requests.send('PATCH', path, JSON.stringify(object), PatchStrategy.ServerSideApply),
    );
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
   * those marked with the attempt `keepAttempt`.
   */
  async deleteJobs(build: string, kind: JobKind, keepAttempt?: string): Promise<void> {
    await this.deleteAll(
      'batch/v1',
      'Job',
      `runboat/build=${build},runboat/job-kind=${kind}`,
      (job) =>
        keepAttempt === undefined || job.metadata?.annotations?.[JOB_ATTEMPT_ANNOTATION] !== keepAttempt,
    );
  }

  /**
   * Deletes every object labelled with the build, of every kind it may have, so that a kubefile
   * adding a kind (a NetworkPolicy, a CronJob) leaks nothing; returns how many objects were still
   * there. The kinds are those builds have objects of (`kindsInUse`), or with `everyKind` every
   * kind the namespace can hold (`objectKinds`: the orphan sweep's, the backstop).
   */
  async deleteBuild(build: string, { everyKind = false } = {}): Promise<number> {
    const kinds = await (everyKind ? this.objectKinds() : this.kindsInUse());
    const selector = `runboat/build=${build}`;
    // Each kind kubefiles make goes in one request. Of the other kinds (a Deployment's
    // ReplicaSets and pods, a Job's pods, a Service's EndpointSlices), what a controller made is
    // left to the garbage collector, which deletes it with its owner, deleted here: a pod deleted
    // before its ReplicaSet would be made again, and deleting them ahead of the collector cost
    // the cluster more than it saved the worker (README, "After release v5").
    const madeByKubefiles = (kind: ObjectKind, i: number) =>
      i < BUILD_OBJECT_KINDS.length
        ? !(kind.apiVersion === 'v1' && kind.kind === 'Pod')
        : kind.required || this.appliedKinds.has(`${kind.apiVersion}/${kind.kind}`);
    const deleteKind = (kind: ObjectKind, i: number) =>
      this.skippingForbidden(kind, 0, async () => {
        const deleted = madeByKubefiles(kind, i)
          ? await this.deleteCollection(kind.apiVersion, kind.kind, selector)
          : await this.deleteAll(kind.apiVersion, kind.kind, selector, (object) => !controlled(object));
        await this.releaseCleanupFinalizers(kind, deleted);
        return deleted.length;
      });
    let deleted = 0;
    // The contract's kinds in their order; the others (rarely any object) all at once.
    for (const [i, kind] of kinds.slice(0, BUILD_OBJECT_KINDS.length).entries())
      deleted += await deleteKind(kind, i);
    const others = await Promise.all(
      kinds
        .slice(BUILD_OBJECT_KINDS.length)
        .map((kind, i) => deleteKind(kind, BUILD_OBJECT_KINDS.length + i)),
    );
    return others.reduce((sum, count) => sum + count, deleted);
  }

  /**
   * The kinds a build being undeployed may have objects of: the contract's, those of
   * RUNBOAT_DEPLOYMENT_RESOURCE_TYPES, those this process applied, and the other kinds of
   * `objectKinds` that held an object labelled with a build when last discovered (one list of at
   * most one object per kind, per DISCOVERY_TTL_MS). Listing each of the twenty-odd kinds a
   * namespace can hold for every undeploy was most of its kube-apiserver requests, and those
   * the worker's Role does not grant were refused each time. A kind a kubefile started creating
   * since, applied by another worker, is deleted by the orphan sweep (`everyKind`).
   */
  async kindsInUse(): Promise<ObjectKind[]> {
    const discovered = this.currentDiscovery();
    const [kinds, inUse] = await Promise.all([discovered.kinds, discovered.inUse]);
    const applied = kinds.filter(
      (kind) => this.appliedKinds.has(`${kind.apiVersion}/${kind.kind}`) && !inUse.includes(kind),
    );
    return [...inUse, ...applied];
  }

  /** The Deployments labelled with `build`, whole (one, unless a kubefile made more). */
  async deploymentsOf(build: string): Promise<V1Deployment[]> {
    return (await this.list('apps/v1', 'Deployment', `runboat/build=${build}`)).items as V1Deployment[];
  }

  /** Objects of every kind `objectKinds` names, matching `labelSelector` (one build's by default). */
  async listBuildObjects(
    build: string,
    labelSelector = `runboat/build=${build}`,
  ): Promise<KubernetesObject[]> {
    const lists = await Promise.all(
      (await this.objectKinds()).map((kind) =>
        this.skippingForbidden(kind, [], async () => {
          const { items } = await this.list(kind.apiVersion, kind.kind, labelSelector);
          // List items come without their kind.
          return items.map((item) => ({ ...item, apiVersion: kind.apiVersion, kind: kind.kind }));
        }),
      ),
    );
    return lists.flat();
  }

  /**
   * Every build with objects in the namespace, and when its newest object was created: every
   * kind listed by pages of metadata, so that the worker holds one page at a time, not every
   * object of thousands of builds with its spec and status.
   */
  async buildsWithObjects(): Promise<Map<string, Date>> {
    const newest = new Map<string, Date>();
    const note = (object: KubernetesObject) => {
      const build = object.metadata?.labels?.['runboat/build'];
      const created = new Date(object.metadata?.creationTimestamp ?? 0);
      if (build && !(created <= (newest.get(build) ?? new Date(0)))) newest.set(build, created);
    };
    for (const kind of await this.objectKinds()) {
      await this.skippingForbidden(kind, undefined, async () => {
        let page: { items: KubernetesObject[]; next?: string } = { items: [], next: '' };
        do {
          page = await this.metadataPage(kind.apiVersion, kind.kind, 'runboat/build', {
            limit: this.listPageSize,
            continueFrom: page.next,
          });
          page.items.forEach(note);
        } while (page.next);
      });
    }
    return newest;
  }

  /**
   * The kinds a build's objects may have: the contract's, then every namespaced kind the
   * cluster serves that can be listed and deleted (API discovery, cached per worker for
   * DISCOVERY_TTL_MS), the RUNBOAT_DEPLOYMENT_RESOURCE_TYPES among them marked required.
   */
  async objectKinds(): Promise<ObjectKind[]> {
    return this.currentDiscovery().kinds;
  }

  private currentDiscovery(): Discovery {
    if (!this.discovered || Date.now() - this.discovered.at > DISCOVERY_TTL_MS) {
      const kinds = this.discover();
      const inUse = kinds.then((all) => this.withBuildObjects(all));
      // A failed discovery is tried again on the next call.
      inUse.catch(() => (this.discovered = undefined));
      this.discovered = { at: Date.now(), kinds, inUse };
    }
    return this.discovered;
  }

  /**
   * Of `kinds`, the contract's, the required and those some object labelled with a build has,
   * not counting what controllers made from a build's objects (`CONTROLLER_MADE_LABELS`): an
   * undeploy leaves that to them, and listing a Deployment's ReplicaSets or a Service's
   * Endpoints and EndpointSlices for every undeploy found nothing else to delete.
   */
  private async withBuildObjects(kinds: ObjectKind[]): Promise<ObjectKind[]> {
    const held = await Promise.all(
      kinds.map(
        (kind, i) =>
          i < BUILD_OBJECT_KINDS.length ||
          kind.required ||
          this.skippingForbidden(kind, false, async () => {
            const items = await this.listMetadata(kind.apiVersion, kind.kind, MADE_FROM_KUBEFILES, 1);
            return items.length > 0;
          }),
      ),
    );
    return kinds.filter((_, i) => held[i]);
  }

  private async discover(): Promise<ObjectKind[]> {
    const { groups } = await this.groups.getAPIVersions();
    const versions = ['v1', ...groups.flatMap((group) => group.preferredVersion?.groupVersion ?? [])];
    const served = (
      await Promise.all(
        versions.map(async (apiVersion) =>
          (await this.discovery.resources(apiVersion).catch(() => [])).map((resource) => ({
            apiVersion,
            resource,
          })),
        ),
      )
    )
      .flat()
      .filter(
        ({ apiVersion, resource }) =>
          resource.namespaced &&
          !resource.name.includes('/') &&
          ['list', 'delete'].every((verb) => resource.verbs.includes(verb)) &&
          !NEVER_BUILD_KINDS.has(`${apiVersion}/${resource.kind}`),
      );
    const named = (type: string) => {
      const [name, ...group] = type.toLowerCase().split('.');
      return served.filter(({ apiVersion, resource }) => {
        const resourceGroup = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
        const names = [
          resource.name,
          resource.singularName,
          resource.kind.toLowerCase(),
          ...(resource.shortNames ?? []),
        ];
        return names.includes(name) && (group.length === 0 || group.join('.') === resourceGroup);
      });
    };
    const required = new Set(this.deploymentResourceTypes.flatMap((type) => named(type)));
    const unknown = this.deploymentResourceTypes.filter((type) => named(type).length === 0);
    if (unknown.length) throw new UnknownResourceTypesError(unknown);
    const key = (kind: { apiVersion: string; kind: string }) => `${kind.apiVersion}/${kind.kind}`;
    const contract = new Set(BUILD_OBJECT_KINDS.map(key));
    const isRequired = (apiVersion: string, kind: string) =>
      [...required].some((r) => r.apiVersion === apiVersion && r.resource.kind === kind);
    return [
      ...BUILD_OBJECT_KINDS.map(({ apiVersion, kind }) => ({
        apiVersion,
        kind,
        required: isRequired(apiVersion, kind),
      })),
      ...served
        .filter(({ apiVersion, resource }) => !contract.has(key({ apiVersion, kind: resource.kind })))
        .map(({ apiVersion, resource }) => ({
          apiVersion,
          kind: resource.kind,
          required: isRequired(apiVersion, resource.kind),
        })),
    ];
  }

  /**
   * Runs `access` on objects of `kind`; a kind the worker may not list or delete (its Role does
   * not grant it, so no build of this worker has one) or no longer served gives `none`, unless
   * the configuration says builds create it.
   */
  private async skippingForbidden<T>(kind: ObjectKind, none: T, access: () => Promise<T>): Promise<T> {
    try {
      return await access();
    } catch (error) {
      if (kind.required || !isStatus(error, 403, 404)) throw error;
      return none;
    }
  }

  /** Waits, by watching, until the build's job of `kind` succeeds or fails. */
  async waitForJob(build: string, kind: JobKind, options: WatchOptions): Promise<JobEnd> {
    const selector = `runboat/build=${build},runboat/job-kind=${kind}`;
    return this.watchUntil<V1Job, JobEnd>('batch/v1', 'Job', selector, options, (type, job) => {
      if (type === 'DELETED') return { outcome: { succeeded: false, reason: `the ${kind} job was deleted` } };
      const outcome = jobOutcome(job);
      return outcome && { outcome, ranSeconds: jobRunSeconds(job) };
    });
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
      .readNamespacedConfigMap({ name: keptInitLogName(build), namespace: this.namespace })
      .catch((error: unknown) => (isStatus(error, 404) ? undefined : Promise.reject(error)));
    return kept?.data?.log;
  }

  /** Keeps the init log in a ConfigMap of the build, so that it outlives the job's pod. */
  async keepInitLog(build: string): Promise<boolean> {
    const log = await this.readLog(build, 'initialize');
    if (log === undefined) return false;
    await this.storeInitLog(build, log);
    return true;
  }

  /** Stores `log` as the build's kept init log, what `readLog` falls back to (its last MAX_LOG_BYTES). */
  async storeInitLog(build: string, log: string): Promise<void> {
    await this.apply([
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: keptInitLogName(build),
          namespace: this.namespace,
          labels: { 'runboat/build': build },
        },
        data: { log: log.slice(-MAX_LOG_BYTES) },
      } as KubernetesObject,
    ]);
  }

  private async patchDeployment(
    build: string,
    missingIsDone: boolean,
    annotations: Record<string, string>,
    spec?: { replicas: number },
  ): Promise<void> {
    const patch = (name?: string) =>
      this.objects.patch(
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name, namespace: this.namespace, annotations },
          spec,
        },
        undefined,
        undefined,
        FIELD_MANAGER,
        undefined,
        PatchStrategy.MergePatch,
      );
    // The name this process applied saves a list, which scans every Deployment of the namespace.
    const applied = this.deploymentNames.get(build);
    if (applied !== undefined) {
      try {
        await patch(applied);
        return;
      } catch (error) {
        if (!isStatus(error, 404)) throw error;
        this.deploymentNames.delete(build);
      }
    }
    const items = await this.listMetadata('apps/v1', 'Deployment', `runboat/build=${build}`);
    if (items.length === 0 && missingIsDone) return;
    if (items.length !== 1)
      throw new Error(`expected one Deployment labelled runboat/build=${build}, found ${items.length}`);
    await patch(items[0].metadata?.name);
  }

  private list(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    limit?: number,
    continueToken?: string,
  ) {
    return this.objects.list(
      apiVersion,
      kind,
      this.namespace,
      undefined,
      undefined,
      undefined,
      undefined,
      labelSelector,
      limit,
      continueToken,
    );
  }

  /** Objects of a kind matching `labelSelector`, their metadata only (METADATA_LIST). */
  private async listMetadata(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    limit?: number,
  ): Promise<KubernetesObject[]> {
    return (await this.metadataPage(apiVersion, kind, labelSelector, { limit })).items;
  }

  /** A page of at most `limit` objects' metadata, from the page `continueFrom` said comes next. */
  private async metadataPage(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    { limit, continueFrom }: { limit?: number; continueFrom?: string },
  ): Promise<{ items: KubernetesObject[]; next?: string }> {
    if (!this.requests) {
      const list = await this.list(apiVersion, kind, labelSelector, limit, continueFrom || undefined);
      return { items: list.items, next: list.metadata?._continue };
    }
    const query = new URLSearchParams({ labelSelector });
    if (limit !== undefined) query.set('limit', String(limit));
    if (continueFrom) query.set('continue', continueFrom);
    const path = `${await this.discovery.collectionPath(apiVersion, kind, this.namespace)}?${query}`;
    const response = await this.requests.send('GET', path, '', 'application/json', METADATA_LIST);
    failUnlessAccepted(response);
    const list = JSON.parse(response.body) as {
      items: KubernetesObject[] | null;
      metadata?: { continue?: string };
    };
    // An empty PartialObjectMetadataList has `items: null`.
    return { items: list.items ?? [], next: list.metadata?.continue };
  }

  /** Deletes the object (its dependents in the background); one already gone counts as deleted. */
  private async deleteObject(object: KubernetesObject): Promise<void> {
    if (!this.requests) {
      await this.objects
        .delete(object, undefined, undefined, undefined, undefined, 'Background')
        .catch((error: unknown) => (isStatus(error, 404) ? undefined : Promise.reject(error)));
      return;
    }
    const path = `${await this.discovery.objectPath(object)}?propagationPolicy=Background`;
    failUnlessAccepted(await this.requests.send('DELETE', path), 404);
  }

  /**
   * Deletes the objects of `kind` matching `labelSelector` (their dependents in the background)
   * in one request; returns how many there were. Where the collection delete is refused (not
   * granted by the worker's Role, or not served for the kind), lists and deletes them one by one
   * from then on.
   */
  private async deleteCollection(
    apiVersion: string,
    kind: string,
    labelSelector: string,
  ): Promise<KubernetesObject[]> {
    const key = `${apiVersion}/${kind}`;
    if (this.requests && !this.collectionDeleteRefused.has(key)) {
      const query = new URLSearchParams({ labelSelector, propagationPolicy: 'Background' });
      const path = `${await this.discovery.collectionPath(apiVersion, kind, this.namespace)}?${query}`;
      const response = await this.requests.send('DELETE', path, '', 'application/json', METADATA_LIST);
      if (response.status !== 403 && response.status !== 405) {
        failUnlessAccepted(response);
        return (JSON.parse(response.body) as { items: KubernetesObject[] | null }).items ?? [];
      }
      this.collectionDeleteRefused.add(key);
    }
    return this.deleteAll(apiVersion, kind, labelSelector);
  }

  private async deleteAll(
    apiVersion: string,
    kind: string,
    labelSelector: string,
    select: (item: KubernetesObject) => boolean = () => true,
  ): Promise<KubernetesObject[]> {
    const items = (await this.listMetadata(apiVersion, kind, labelSelector)).filter(select);
    for (const item of items) await this.deleteObject({ apiVersion, kind, metadata: item.metadata });
    return items;
  }

  /**
   * Kubefiles kept from runboat give the Deployment runboat's cleanup finalizer, which runboat's
   * controller removed once the cleanup Job had run. Here the workflow runs that Job before it
   * deletes anything, so the finalizer has served: released from the objects just deleted, which
   * would otherwise stay Terminating for good, their ReplicaSets and pods with them.
   */
  private async releaseCleanupFinalizers(kind: ObjectKind, deleted: KubernetesObject[]): Promise<void> {
    for (const { metadata } of deleted) {
      const finalizers = metadata?.finalizers ?? [];
      if (!finalizers.includes(RUNBOAT_CLEANUP_FINALIZER)) continue;
      await this.objects
        .patch(
          {
            apiVersion: kind.apiVersion,
            kind: kind.kind,
            metadata: {
              name: metadata?.name,
              namespace: this.namespace,
              finalizers: finalizers.filter((finalizer) => finalizer !== RUNBOAT_CLEANUP_FINALIZER),
            },
          },
          undefined,
          undefined,
          FIELD_MANAGER,
          undefined,
          PatchStrategy.MergePatch,
        )
        .catch((error: unknown) => (isStatus(error, 404) ? undefined : Promise.reject(error)));
    }
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
      // A cancellation during the list (a worker shutting down) must stop here: the watch only
      // hears of one that comes once it listens, and would wait for its Job until its timeout.
      options.signal.throwIfAborted();
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
      const params = {
        labelSelector,
        resourceVersion: from,
        allowWatchBookmarks: true,
        timeoutSeconds: this.watchTimeoutSeconds,
      };
      this.watcher
        .watch(
          path,
          params,
          (type: string, object: T & { code?: number }) => {
            if (type === 'ERROR') {
              // 410 Gone: our resourceVersion is too old; relist. Any other error fails the
              // attempt: watching again at once would loop as fast as the server answers, while
              // the activity's retry backs off (and resumes from the heartbeated version).
              const status = object as { code?: number; message?: string };
              finish(
                status.code === 410
                  ? { resourceVersion: undefined }
                  : new Error(`watch of ${kind} failed: ${status.code ?? ''} ${status.message ?? ''}`.trim()),
              );
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

/**
 * Throws the ApiException the generated clients throw for an answer that is neither a success
 * nor one of `alsoFine` (a delete's 404), so that callers read refusals alike.
 */
function failUnlessAccepted({ status, body }: RawResponse, ...alsoFine: number[]): void {
  if ((status < 200 || status > 299) && !alsoFine.includes(status))
    throw new ApiException(status, 'Unsuccessful HTTP Request', body, {});
}

/** The endpoints controller's label on the Endpoints it makes (value `endpoint-controller`). */
const ENDPOINTS_MANAGED_BY = 'endpoints.kubernetes.io/managed-by';

/**
 * The labels Kubernetes' controllers add to what they make from a build's objects (which also
 * carries the build's labels, copied from its owner): a Deployment's ReplicaSets and their pods,
 * a Job's pods (old clusters' label and new), a Service's Endpoints (no owner: the endpoints
 * controller deletes them with the Service) and EndpointSlices, a StatefulSet's pods.
 */
const CONTROLLER_MADE_LABELS = [
  'pod-template-hash',
  'job-name',
  'batch.kubernetes.io/job-name',
  ENDPOINTS_MANAGED_BY,
  'endpointslice.kubernetes.io/managed-by',
  'controller-revision-hash',
];
/** A build's objects but those `CONTROLLER_MADE_LABELS` mark: what the kind probe looks for. */
const MADE_FROM_KUBEFILES = ['runboat/build', ...CONTROLLER_MADE_LABELS.map((label) => `!${label}`)].join();

/**
 * Made by a controller from an owner (`ownerReferences` with `controller: true`), or a Service's
 * Endpoints, which the endpoints controller deletes with their Service.
 */
const controlled = (object: KubernetesObject) =>
  (object.metadata?.ownerReferences?.some((owner) => owner.controller) ?? false) ||
  object.metadata?.labels?.[ENDPOINTS_MANAGED_BY] === 'endpoint-controller';

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The ConfigMap that keeps a build's init log once its pod may be gone. */
const keptInitLogName = (build: string) => `${build}-init-log`;

/** How a watched Job ended, and how long it ran (from its start to its end, by its status). */
export interface JobEnd {
  outcome: JobOutcome;
  /** Undefined for a Job deleted, or whose status lacks the times (never started). */
  ranSeconds?: number;
}

/** Seconds from an ended Job's start to its completion, or to its failure. */
export function jobRunSeconds(job: V1Job): number | undefined {
  const started = job.status?.startTime;
  const ended =
    job.status?.completionTime ??
    job.status?.conditions?.find((c) => c.type === 'Failed' && c.status === 'True')?.lastTransitionTime;
  if (!started || !ended) return undefined;
  return Math.max(0, (new Date(ended).getTime() - new Date(started).getTime()) / 1000);
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
