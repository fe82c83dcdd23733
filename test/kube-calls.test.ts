import { KubernetesObjectApi, type KubernetesObject, type V1OwnerReference } from '@kubernetes/client-node';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  vi,
  type MockInstance,
} from 'vitest';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { KeptAliveRequests, keptAliveRequests, withSilenceLimit } from '../common/kube-keep-alive';
import { BuildCluster, BUILD_OBJECT_KINDS } from '../common/kubernetes';
import { kubeConfig, kubeConfigThrough, TestCluster, waitFor } from './helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

// What BuildCluster's API calls cost the kube-apiserver, without losing what they guarantee:
// calls share kept-alive connections (common/kube-keep-alive.ts), and only objects the
// server has not accepted before are dry-run, so that a broken set still creates nothing.

describe('Kubernetes API calls over kept-alive connections', () => {
  let proxy: TcpProxy;
  let cluster: BuildCluster;

  beforeAll(async () => {
    proxy = await startTcpProxy(new URL(kubeConfig().getCurrentCluster()!.server).host);
    cluster = new BuildCluster(kubeConfigThrough(proxy), 'keep-alive');
  });

  afterAll(() => proxy.close());

  it('reuses connections across calls', async () => {
    // The kinds a build may have, from API discovery (cached): a call per group version.
    const kinds = (await cluster.objectKinds()).length;
    expect(kinds).toBeGreaterThanOrEqual(BUILD_OBJECT_KINDS.length);
    for (let i = 0; i < 5; i++) await cluster.listBuildObjects('nothing-here');
    // Each listing is a call per kind, made at once: about that many connections in all (some
    // more for discovery's calls made at once), where a connection per call made six times as many.
    expect(proxy.connections).toBeGreaterThan(0);
    expect(proxy.connections).toBeLessThanOrEqual(2 * kinds);
  });

  it('reuses connections across applies', async () => {
    await new TestCluster('keep-alive').createNamespace();
    const labels = { 'runboat/build': 'keep-alive' };
    const objects = (round: number) =>
      Array.from({ length: 8 }, (_, i) => ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `keep-alive-${i}`, namespace: 'keep-alive', labels },
        data: { round: String(round) },
      })) as KubernetesObject[];
    await cluster.apply(objects(0));
    const before = proxy.connections;
    // Each round dry-runs the eight changed objects at once, then applies them at once.
    for (let round = 1; round <= 5; round++) await cluster.apply(objects(round));
    expect(proxy.connections - before).toBeLessThanOrEqual(8);
  });

  it('opens new connections once the kept ones were dropped', async () => {
    const before = proxy.connections;
    proxy.cut();
    proxy.restore();
    // A call racing the drop may fail (activities retry); the calls after it go through.
    const listed = await waitFor('a listing after the drop', () =>
      cluster.listBuildObjects('nothing-here').catch(() => undefined),
    );
    expect(listed).toEqual([]);
    expect(proxy.connections).toBeGreaterThan(before);
  });

  it('resumes the TLS session on a new connection, for a watch as for other calls', async () => {
    const connections = vi.spyOn(https.Agent.prototype, 'createConnection');
    try {
      // Calls on kept-alive connections: after a drop, the next connection resumes the session.
      const requests = keptAliveRequests(kubeConfigThrough(proxy))!;
      const newSocket = async () => {
        const answered = await waitFor('an answer on a new connection', () =>
          requests.send('GET', '/version').catch(() => undefined),
        );
        expect(answered.status).toBe(200);
        return connections.mock.results.at(-1)!.value as TLSSocket | undefined;
      };
      expect((await newSocket())?.isSessionReused()).toBe(false);
      proxy.cut();
      proxy.restore();
      expect((await newSocket())?.isSessionReused()).toBe(true);

      // Watches: a connection each, closed when it ends; the next one resumes the session.
      const watches = withSilenceLimit(kubeConfigThrough(proxy), 10_000);
      const resumed = async () => {
        const { agent, headers } = await watches.applyToFetchOptions({});
        return new Promise<boolean>((resolve, reject) =>
          https
            .get(
              `https://${proxy.address}/version`,
              { agent: agent as https.Agent, headers: Object.fromEntries(headers as unknown as Headers) },
              (response) => {
                const reused = (response.socket as TLSSocket).isSessionReused();
                response.resume();
                response.on('end', () => resolve(reused));
              },
            )
            .on('error', reject),
        );
      };
      const sessions = [];
      for (let i = 0; i < 3; i++) sessions.push(await resumed());
      expect(sessions).toEqual([false, true, true]);
    } finally {
      connections.mockRestore();
    }
  });
  it('resolves the credentials once per CREDENTIALS_REUSED_MS, not for every call', async () => {
    const kubeConfig = kubeConfigThrough(proxy);
    const resolved = vi.spyOn(kubeConfig, 'applyToHTTPSOptions');
    const reused = keptAliveRequests(kubeConfig)!;
    for (let call = 0; call < 5; call++) expect((await reused.send('GET', '/version')).status).toBe(200);
    expect(resolved).toHaveBeenCalledTimes(1);
    // Past the time (here none), each call resolves them again: a rotated token is read.
    const everyCall = keptAliveRequests(kubeConfig, undefined, 0)!;
    for (let call = 0; call < 3; call++) expect((await everyCall.send('GET', '/version')).status).toBe(200);
    expect(resolved).toHaveBeenCalledTimes(4);
  });
});

describe('a kube-apiserver that stops answering', () => {
  let proxy: TcpProxy;
  beforeEach(async () => {
    proxy = await startTcpProxy(new URL(kubeConfig().getCurrentCluster()!.server).host);
  });
  afterEach(() => proxy.close());

  it('fails the calls that wait on it in silence, applies and lists alike', async () => {
    const silenceMs = 1_000;
    const cluster = new BuildCluster(kubeConfigThrough(proxy), 'silence', [], { socketTimeoutMs: silenceMs });
    const configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'silence', namespace: 'silence', labels: { 'runboat/build': 'silence' } },
    } as KubernetesObject;
    await new TestCluster('silence').createNamespace();
    await cluster.apply([configMap]); // discovery and the object's path, while it answers
    proxy.stall();
    // A server-side apply (the raw kept-alive requests) and a list (the generated clients).
    await expect(
      cluster.apply([{ ...configMap, data: { changed: 'yes' } } as KubernetesObject]),
    ).rejects.toThrow(/silent for 1000 ms/);
    await expect(cluster.listBuildObjects('silence')).rejects.toThrow(/silent for 1000 ms/);
  });

  it('fails a watch that falls silent past the time the server would have ended it', async () => {
    // Ended by the server after a second and watched again; silent past two, it has lost its server.
    const timeouts = { socketTimeoutMs: 1_000, watchTimeoutSeconds: 1 };
    const cluster = new BuildCluster(kubeConfigThrough(proxy), 'silence', [], timeouts);
    const watch = (resourceVersion?: string) =>
      cluster.waitForJob('silence', 'initialize', {
        signal: new AbortController().signal,
        resourceVersion,
        onProgress: () => undefined,
      });
    // Opened while the server answers: its list (on a kept-alive connection) went through and its
    // watch has a connection of its own; then the server hangs.
    const open = watch();
    const settled = open.catch((error: unknown) => error);
    await waitFor('the watch to connect', async () => proxy.connections >= 2);
    proxy.stall();
    expect(String(await settled)).toMatch(/silent for 2000 ms/);
    // Resumed from a heartbeat while the server hangs: its answer's headers never come.
    await expect(watch('1')).rejects.toThrow(/silent for 2000 ms/);
  });

  it('stops a watch cancelled while its first list waits for the answer', async () => {
    // A worker shutting down cancels its activities; one whose list was on the wire then would
    // have watched its Job until the server ended the watch, holding the worker draining.
    const cluster = new BuildCluster(kubeConfigThrough(proxy), 'silence', [], { watchTimeoutSeconds: 300 });
    proxy.hold();
    const shutdown = new AbortController();
    const watching = cluster.waitForJob('never-made', 'initialize', {
      signal: shutdown.signal,
      onProgress: () => undefined,
    });
    shutdown.abort(new Error('worker shutting down'));
    proxy.release();
    await expect(watching).rejects.toThrow('worker shutting down');
  });
});

describe('apply', () => {
  const namespace = 'kube-apply';
  const build = 'apply-test';
  const test = new TestCluster(namespace);
  const cluster = test.builds;
  const labels = { 'runboat/build': build };
  const configMap = (name: string, value: string): KubernetesObject =>
    ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `${build}-${name}`, namespace, labels },
      data: { value },
    }) as KubernetesObject;
  // Port 0 is refused by validation (422), which only the server knows.
  const invalidService = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `${build}-web`, namespace, labels },
    spec: { ports: [{ port: 0 }] },
  } as KubernetesObject;
  // Applies go out as plain requests (common/kube-keep-alive.ts), the object API's models unused.
  const dryRuns = vi.spyOn(KeptAliveRequests.prototype, 'send');
  const dryRunNames = () =>
    dryRuns.mock.calls
      .filter(([, path]) => new URL(path, 'https://x').searchParams.get('dryRun') === 'All')
      .map(([, , body]) => (JSON.parse(body ?? '') as KubernetesObject).metadata?.name);
  const configMapValues = async () =>
    Object.fromEntries(
      (await cluster.listBuildObjects(build))
        .filter((object) => object.kind === 'ConfigMap')
        .map((object) => [object.metadata?.name, (object as { data?: { value?: string } }).data?.value]),
    );

  beforeAll(() => test.createNamespace());
  afterAll(() => dryRuns.mockRestore());

  it('creates nothing when one object of the set is refused', async () => {
    await expect(cluster.apply([configMap('a', '1'), invalidService])).rejects.toMatchObject({ code: 422 });
    expect(await cluster.listBuildObjects(build)).toEqual([]);
  });

  it('dry-runs only the objects it has not applied as they are', async () => {
    dryRuns.mockClear();
    await cluster.apply([configMap('a', '1'), configMap('b', '1')]);
    expect(dryRunNames().sort()).toEqual([`${build}-a`, `${build}-b`]);

    dryRuns.mockClear();
    await cluster.apply([configMap('a', '1'), configMap('b', '1')]);
    expect(dryRunNames()).toEqual([]);

    // A changed object is new again: a set it makes invalid still changes nothing.
    dryRuns.mockClear();
    await expect(
      cluster.apply([configMap('a', '1'), configMap('b', '2'), invalidService]),
    ).rejects.toMatchObject({
      code: 422,
    });
    expect(dryRunNames().sort()).toEqual([`${build}-b`, `${build}-web`]);
    expect(await configMapValues()).toEqual({ [`${build}-a`]: '1', [`${build}-b`]: '1' });

    await cluster.apply([configMap('a', '1'), configMap('b', '2')]);
    expect(await configMapValues()).toEqual({ [`${build}-a`]: '1', [`${build}-b`]: '2' });
  });

  it("dry-runs no object that differs from one accepted only by the build's values", async () => {
    // Two builds of the same kubefiles: their names and commits differ, nothing else.
    const ofBuild = (id: string, commit: string) =>
      ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `${build}-${id}-env`, namespace, labels },
        data: { database: `${build}-${id}`, commit },
      }) as KubernetesObject;
    const [one, two, three] = ['a', 'b', 'c'].map((digit) => digit.repeat(40));
    dryRuns.mockClear();
    await cluster.apply([ofBuild('one', one)], [`${build}-one`, one]);
    expect(dryRunNames()).toEqual([`${build}-one-env`]);

    dryRuns.mockClear();
    await cluster.apply([ofBuild('two', two)], [`${build}-two`, two]);
    expect(dryRunNames()).toEqual([]);
    expect((await cluster.listBuildObjects(build)).map((object) => object.metadata?.name)).toContain(
      `${build}-two-env`,
    );

    // A value of another length, or anything else changed: a new shape, dry-run again.
    dryRuns.mockClear();
    await cluster.apply([ofBuild('three', three)], [`${build}-three`, three]);
    expect(dryRunNames()).toEqual([`${build}-three-env`]);
    dryRuns.mockClear();
    const changed = { ...ofBuild('own', one), data: { database: 'else', commit: one } } as KubernetesObject;
    await cluster.apply([changed], [`${build}-own`, one]);
    expect(dryRunNames()).toEqual([`${build}-own-env`]);
  });

  it('dry-runs a shape once for the applies under way at once; a refused one, each its own', async () => {
    // A burst: three builds of the same kubefiles applied at once, none of their shapes accepted yet.
    const ofBuild = (id: string) =>
      ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `${build}-${id}-burst`, namespace, labels },
        data: { database: `${build}-${id}` },
      }) as KubernetesObject;
    dryRuns.mockClear();
    await Promise.all(['four', 'five', 'nine'].map((id) => cluster.apply([ofBuild(id)], [`${build}-${id}`])));
    expect(dryRunNames()).toHaveLength(1);
    expect(Object.keys(await configMapValues())).toEqual(
      expect.arrayContaining(['four', 'five', 'nine'].map((id) => `${build}-${id}-burst`)),
    );

    // The first's dry run is refused: the other's is its own, and so is the refusal it reports.
    const invalidOf = (id: string) =>
      ({
        ...invalidService,
        metadata: { ...invalidService.metadata, name: `${build}-${id}-web` },
      }) as KubernetesObject;
    dryRuns.mockClear();
    const refusals = await Promise.allSettled(
      ['seven', 'eight'].map((id) => cluster.apply([invalidOf(id)], [`${build}-${id}`])),
    );
    expect(dryRunNames().sort()).toEqual([`${build}-eight-web`, `${build}-seven-web`]);
    refusals.forEach((refusal, i) => {
      expect(refusal).toMatchObject({ status: 'rejected', reason: { code: 422 } });
      expect(String((refusal as PromiseRejectedResult).reason.body)).toContain(
        `${build}-${['seven', 'eight'][i]}-web`,
      );
    });
    expect((await cluster.listBuildObjects(build)).filter((object) => object.kind === 'Service')).toEqual([]);
  });
});

describe('Deployment patches', () => {
  const namespace = 'kube-patch';
  const build = 'patch-test';
  const test = new TestCluster(namespace);
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: `${build}-odoo`, namespace, labels: { 'runboat/build': build } },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: build } },
      template: {
        metadata: { labels: { app: build } },
        spec: { containers: [{ name: 'odoo', image: 'odoo' }] },
      },
    },
  } as KubernetesObject;
  // Lists go out as plain requests (metadata only), or through the object API's models. Spied
  // from this block's start: the block above restores its own spy on the requests when it ends.
  let requests: MockInstance<KeptAliveRequests['send']>;
  let objectLists: MockInstance<KubernetesObjectApi['list']>;
  const lists = {
    clear() {
      requests.mockClear();
      objectLists.mockClear();
    },
    get count() {
      return (
        requests.mock.calls.filter(([method]) => method === 'GET').length + objectLists.mock.calls.length
      );
    },
  };
  const replicas = async () => (await test.deployment(build))?.spec?.replicas;

  beforeAll(async () => {
    requests = vi.spyOn(KeptAliveRequests.prototype, 'send');
    objectLists = vi.spyOn(KubernetesObjectApi.prototype, 'list');
    await test.createNamespace();
  });
  afterAll(() => {
    requests.mockRestore();
    objectLists.mockRestore();
  });

  it('go to the Deployment this process applied without a list, and find it by label otherwise', async () => {
    await test.builds.apply([deployment]);
    lists.clear();
    await test.builds.scale(build, 1, new Date());
    expect(lists.count).toBe(0);
    expect(await replicas()).toBe(1);

    // Another process (a restarted worker) has applied nothing: it lists.
    const restarted = new BuildCluster(kubeConfig(), namespace);
    await restarted.setInitStatus(build, 'succeeded');
    expect(lists.count).toBe(1);
    expect((await test.deployment(build))?.metadata?.annotations?.['runboat/init-status']).toBe('succeeded');
  });

  it('scale a build whose Deployment is gone to 0, and refuse anything else', async () => {
    await test.apps.deleteNamespacedDeployment({ name: `${build}-odoo`, namespace });
    await waitFor('the Deployment gone', async () => (await test.deployment(build)) === undefined);
    await test.builds.scale(build, 0, new Date());
    await expect(test.builds.setInitStatus(build, 'failed')).rejects.toThrow(/expected one Deployment/);
  });
});

describe('the kinds an undeploy lists', () => {
  const namespace = 'kube-kinds';
  const test = new TestCluster(namespace);
  const labelled = (apiVersion: string, kind: string, build: string, spec: object) =>
    ({
      apiVersion,
      kind,
      metadata: { name: `${build}-${kind.toLowerCase()}`, namespace, labels: { 'runboat/build': build } },
      ...spec,
    }) as KubernetesObject;
  const networkPolicy = (build: string) =>
    labelled('networking.k8s.io/v1', 'NetworkPolicy', build, { spec: { podSelector: {} } });
  const role = (build: string) => labelled('rbac.authorization.k8s.io/v1', 'Role', build, { rules: [] });
  const cronJob = (build: string) =>
    labelled('batch/v1', 'CronJob', build, {
      spec: {
        schedule: '0 3 * * *',
        jobTemplate: {
          spec: {
            template: {
              spec: { restartPolicy: 'Never', containers: [{ name: 'backup', image: 'odoo' }] },
            },
          },
        },
      },
    });
  const kindsOf = (objects: KubernetesObject[]) => objects.map((object) => object.kind).sort();

  beforeAll(() => test.createNamespace());

  it("are the contract's, those builds had objects of when discovered and those applied since; the orphan sweep takes every kind", async () => {
    // Another process's object, there before this process looks.
    await test.builds.apply([networkPolicy('before')]);
    const cluster = new BuildCluster(kubeConfig(), namespace);
    const inUse = (await cluster.kindsInUse()).map((kind) => kind.kind);
    expect(inUse.slice(0, BUILD_OBJECT_KINDS.length)).toEqual(BUILD_OBJECT_KINDS.map((kind) => kind.kind));
    expect(inUse).toContain('NetworkPolicy');
    expect(inUse).not.toContain('Role');
    expect(inUse).not.toContain('CronJob');
    expect((await cluster.objectKinds()).map((kind) => kind.kind)).toEqual(
      expect.arrayContaining(['Role', 'CronJob']),
    );

    // Since: a kind this process applies, and one another process applies.
    await cluster.apply([cronJob('after')]);
    await test.builds.apply([role('after')]);
    expect(await cluster.deleteBuild('after')).toBe(1);
    expect(kindsOf(await cluster.listBuildObjects('after'))).toEqual(['Role']);
    expect(await cluster.deleteBuild('after', { everyKind: true })).toBe(1);
    expect(await cluster.listBuildObjects('after')).toEqual([]);

    expect(await cluster.deleteBuild('before')).toBe(1);
    expect(await cluster.listBuildObjects('before')).toEqual([]);
  });

  it('leave out what controllers made from a build, Endpoints included, but not the kinds a kubefile makes', async () => {
    // As the controllers make them (this bare control plane runs none): a Deployment's
    // ReplicaSet, a Service's Endpoints, each with the build's labels copied and its own.
    const replicaSet = labelled('apps/v1', 'ReplicaSet', 'made', {
      spec: {
        selector: { matchLabels: { app: 'odoo' } },
        template: {
          metadata: { labels: { app: 'odoo' } },
          spec: { containers: [{ name: 'odoo', image: 'odoo' }] },
        },
      },
    });
    replicaSet.metadata!.labels!['pod-template-hash'] = '5d4b8c9f7';
    const endpoints = labelled('v1', 'Endpoints', 'made', {});
    endpoints.metadata!.labels!['endpoints.kubernetes.io/managed-by'] = 'endpoint-controller';
    await test.builds.apply([replicaSet, endpoints]);
    const made = ['Endpoints', 'ReplicaSet'];

    const before = new BuildCluster(kubeConfig(), namespace);
    const inUse = (await before.kindsInUse()).map((kind) => kind.kind);
    expect(inUse).not.toContain('Endpoints');
    expect(inUse).not.toContain('ReplicaSet');
    expect(await before.deleteBuild('made')).toBe(0);
    expect(kindsOf(await before.listBuildObjects('made'))).toEqual(made);

    // Endpoints a kubefile makes (for a Service without a selector) are the build's to delete.
    await test.builds.apply([labelled('v1', 'Endpoints', 'own', {})]);
    const since = new BuildCluster(kubeConfig(), namespace);
    expect((await since.kindsInUse()).map((kind) => kind.kind)).toContain('Endpoints');
    expect(await since.deleteBuild('own')).toBe(1);
    expect(await since.listBuildObjects('own')).toEqual([]);
    // The orphan sweep leaves the endpoints controller's Endpoints to it (deleted with their
    // Service); the ReplicaSet, here without the Deployment that would own it, is an orphan.
    expect(await since.deleteBuild('made', { everyKind: true })).toBe(1);
    expect(kindsOf(await since.listBuildObjects('made'))).toEqual(['Endpoints']);
  });

  it("deletes a kind's objects in one request, what a controller made too, but leaves pods to the garbage collector", async () => {
    // A ReplicaSet of the build's Deployment, say, goes with the other ReplicaSets; a pod that
    // a ReplicaSet made is deleted with its owner, by the collector (which this bare control
    // plane does not run): deleted before, it would be made again.
    const cluster = new BuildCluster(kubeConfig(), namespace);
    const labelled = (kind: string, name: string, ownerReferences?: V1OwnerReference[]) =>
      ({
        apiVersion: 'v1',
        kind,
        metadata: { name, namespace, labels: { 'runboat/build': 'owned' }, ownerReferences },
        ...(kind === 'Pod' ? { spec: { containers: [{ name: 'odoo', image: 'odoo:16' }] } } : {}),
      }) as KubernetesObject;
    await cluster.apply([labelled('ConfigMap', 'owned-owner')]);
    const { metadata } = await test.core.readNamespacedConfigMap({ name: 'owned-owner', namespace });
    const owner = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      name: 'owned-owner',
      uid: metadata!.uid!,
      controller: true,
    };
    await cluster.apply([
      labelled('ConfigMap', 'owned-dependent', [owner]),
      labelled('Pod', 'owned-pod', [owner]),
      labelled('Pod', 'owned-bare-pod'),
    ]);
    expect(await cluster.deleteBuild('owned')).toBe(3);
    expect((await cluster.listBuildObjects('owned')).map((object) => object.metadata?.name)).toEqual([
      'owned-pod',
    ]);
  });
});

describe("every build's objects, for the orphan sweep", () => {
  const namespace = 'kube-pages';
  const test = new TestCluster(namespace);

  beforeAll(() => test.createNamespace());

  it('are read by pages of metadata, each build with its newest object', async () => {
    const cluster = new BuildCluster(kubeConfig(), namespace, [], { listPageSize: 2 });
    const configMap = (build: string, i: number) =>
      ({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `${build}-${i}`, namespace, labels: { 'runboat/build': build } },
        data: { big: 'x'.repeat(10_000) },
      }) as KubernetesObject;
    for (const [build, count] of [
      ['one', 3],
      ['two', 1],
      ['three', 2],
    ] as const) {
      for (let i = 0; i < count; i++) await cluster.apply([configMap(build, i)]);
    }
    const created = async (name: string) =>
      (await test.core.readNamespacedConfigMap({ name, namespace })).metadata?.creationTimestamp;
    const requests = vi.spyOn(KeptAliveRequests.prototype, 'send');
    try {
      const builds = await cluster.buildsWithObjects();
      expect(Object.fromEntries([...builds].map(([build, at]) => [build, at.toISOString()]))).toEqual({
        one: new Date((await created('one-2'))!).toISOString(),
        two: new Date((await created('two-0'))!).toISOString(),
        three: new Date((await created('three-1'))!).toISOString(),
      });
      // Six ConfigMaps by twos, without their data.
      const configMapPages = requests.mock.results.filter((_, i) =>
        requests.mock.calls[i][1].includes('/configmaps?'),
      );
      expect(configMapPages).toHaveLength(3);
      for (const page of configMapPages) {
        const { body } = (await page.value) as { body: string };
        expect(body).not.toContain('xxxxxxxxxx');
      }
    } finally {
      requests.mockRestore();
    }
  });
});
