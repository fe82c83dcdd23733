import { execFile } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
  type KubernetesObject,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { NativeConnection } from '@temporalio/worker';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendBuildCommand, startBuild } from '../api/build-client';
import { BuildCluster, BUILD_OBJECT_KINDS } from '../common/kubernetes';
import type { BuildStatus } from '../common/types';
import { binary } from '../scripts/paths';
import { buildWorkflowId } from '../workflows/definitions';
import { createWorker } from '../worker/worker';
import {
  SHA,
  TestCluster,
  testConfig,
  testTemporal,
  waitFor,
  type TestTemporal,
  untilBuildStatus,
} from './helpers';

// The in-cluster manifests' RBAC (deploy/rbac.yaml) on the real kube-apiserver: the worker's
// ServiceAccount, Role and RoleBinding are applied as `kubectl kustomize deploy` renders them
// (their namespaces renamed to this test's), and a worker whose every Kubernetes call carries
// a token of that ServiceAccount runs a build's whole life. Nothing more is needed, and
// nothing more is granted.

const execFileAsync = promisify(execFile);
const config = testConfig();
const buildNamespace = config.buildNamespace;
const serviceNamespace = `${buildNamespace}-svc`;
const admin = new TestCluster(buildNamespace);
let temporal: TestTemporal;
let nativeConnection: NativeConnection;
let stopWorker: (() => Promise<void>) | undefined;
let workerKc: KubeConfig;
let apiKc: KubeConfig;

/** The ServiceAccounts, Roles and RoleBindings of `deploy/`, moved to this test's namespaces. */
async function renderedRbac(): Promise<KubernetesObject[]> {
  const { stdout } = await execFileAsync(binary('kubectl'), [
    'kustomize',
    path.resolve(__dirname, '..', 'deploy'),
  ]);
  const objects = parseAllDocuments(stdout).map((doc) => doc.toJS() as KubernetesObject);
  const rbac = objects.filter((o) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind ?? ''));
  // Every Role lives in the build namespace; the ServiceAccounts in the service's.
  const roleNamespaces = new Set(rbac.filter((o) => o.kind === 'Role').map((o) => o.metadata?.namespace));
  const saNamespaces = new Set(
    rbac.filter((o) => o.kind === 'ServiceAccount').map((o) => o.metadata?.namespace),
  );
  expect(roleNamespaces.size).toBe(1);
  expect(saNamespaces.size).toBe(1);
  const [fromBuild] = roleNamespaces;
  const [fromService] = saNamespaces;
  const rename = (ns: string | undefined) =>
    ns === fromBuild ? buildNamespace : ns === fromService ? serviceNamespace : ns;
  // Nothing cluster-wide, and nothing outside these two namespaces.
  expect(objects.filter((o) => /^Cluster/.test(o.kind ?? ''))).toEqual([]);
  for (const object of rbac) {
    expect([fromBuild, fromService]).toContain(object.metadata?.namespace);
    object.metadata!.namespace = rename(object.metadata?.namespace);
    const subjects = (object as { subjects?: Array<{ namespace?: string }> }).subjects ?? [];
    for (const subject of subjects) subject.namespace = rename(subject.namespace);
  }
  return rbac;
}

/** A kubeconfig that authenticates as `serviceAccount` with a TokenRequest token. */
async function tokenKubeConfig(serviceAccount: string): Promise<KubeConfig> {
  const { status } = await admin.core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace: serviceNamespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const cluster = admin.kc.getCurrentCluster()!;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'test', server: cluster.server, caData: cluster.caData, skipTLSVerify: false }],
    users: [{ name: serviceAccount, token: status!.token }],
    contexts: [{ name: 'test', cluster: 'test', user: serviceAccount }],
    currentContext: 'test',
  });
  return kc;
}

/** The HTTP status of a GET of `path` with the credentials of `kc`. */
async function httpStatus(kc: KubeConfig, path: string): Promise<number> {
  const url = new URL(path, kc.getCurrentCluster()!.server);
  const options: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    https
      .get(url, options, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

/** A ServiceAccount bound to a Role of the build namespace with `rules`, as a token kubeconfig. */
async function accountWithRules(name: string, rules: V1PolicyRule[]): Promise<KubeConfig> {
  const objects = KubernetesObjectApi.makeApiClient(admin.kc);
  const rbacApi = 'rbac.authorization.k8s.io/v1';
  await objects.create({
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name, namespace: serviceNamespace },
  });
  await objects.create({
    apiVersion: rbacApi,
    kind: 'Role',
    metadata: { name, namespace: buildNamespace },
    rules,
  } as KubernetesObject);
  await objects.create({
    apiVersion: rbacApi,
    kind: 'RoleBinding',
    metadata: { name, namespace: buildNamespace },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
    subjects: [{ kind: 'ServiceAccount', name, namespace: serviceNamespace }],
  } as KubernetesObject);
  return tokenKubeConfig(name);
}

/** ConfigMaps labelled with `build`, made by the admin. */
async function buildConfigMaps(build: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++)
    await admin.core.createNamespacedConfigMap({
      namespace: buildNamespace,
      body: { metadata: { name: `${build}-${i}`, labels: { 'runboat/build': build } } },
    });
}

const statusCode = (promise: Promise<unknown>) =>
  promise.then(
    () => 200,
    (error: unknown) => (error instanceof ApiException ? error.code : Promise.reject(error)),
  );

beforeAll(async () => {
  await admin.createNamespace();
  await admin.core.createNamespace({ body: { metadata: { name: serviceNamespace } } });
  const objects = KubernetesObjectApi.makeApiClient(admin.kc);
  for (const object of await renderedRbac()) await objects.create(object);
  workerKc = await tokenKubeConfig('runboat-worker');
  apiKc = await tokenKubeConfig('runboat-api');
  admin.playDeploymentController();
  temporal = await testTemporal(config, admin);
  nativeConnection = await NativeConnection.connect({ address: config.temporalAddress });
  const worker = await createWorker(config, nativeConnection, new BuildCluster(workerKc, buildNamespace));
  const run = worker.run();
  stopWorker = async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await run;
  };
});

afterAll(async () => {
  admin.stopControllers();
  await stopWorker?.();
  await nativeConnection?.close();
  await temporal?.close();
});

const statusOf = (name: string, status: BuildStatus) => untilBuildStatus(temporal.client, name, status);

describe('the worker ServiceAccount of deploy/', () => {
  it('is authenticated as itself, with the token of the TokenRequest API', async () => {
    const { status } = await workerKc
      .makeApiClient(CoreV1Api)
      .listNamespacedConfigMap({ namespace: buildNamespace })
      .then(
        () => ({ status: 200 }),
        (error: ApiException<unknown>) => ({ status: error.code }),
      );
    expect(status).toBe(200);
  });

  it("runs a build's whole life with nothing but the Role's permissions", async () => {
    const build = await startBuild(temporal.client, config, {
      repo: 'OCA/mis-builder',
      target_branch: '16.0',
      pr: 7,
      git_commit: SHA('e'),
    });
    await waitFor('init-status started', async () => {
      const d = await admin.deployment(build.name);
      return d?.metadata?.annotations?.['runboat/init-status'] === 'started';
    });
    await admin.finishJob(build.name, 'initialize', true);
    await statusOf(build.name, 'started');
    expect((await admin.deployment(build.name)).spec?.replicas).toBe(1);

    // Reading the init log (as the worker keeps it, and as the API serves it) is allowed;
    // with no pod and no kept log there is simply none.
    const restricted = new BuildCluster(workerKc, buildNamespace);
    expect(await restricted.readLog(build.name, 'initialize')).toBeUndefined();
    expect(await restricted.readLog(build.name, 'deployment')).toBeUndefined();

    await sendBuildCommand(temporal.client, build.name, 'stop');
    await statusOf(build.name, 'stopped');
    expect((await admin.deployment(build.name)).spec?.replicas).toBe(0);

    await sendBuildCommand(temporal.client, build.name, 'start');
    await statusOf(build.name, 'started');

    await sendBuildCommand(temporal.client, build.name, 'undeploy');
    await statusOf(build.name, 'undeploying');
    await admin.finishJob(build.name, 'cleanup', true);
    await temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
    expect(await admin.builds.listBuildObjects(build.name)).toEqual([]);
  });

  it("may read a running pod's log and keep it, and delete leftover pods", async () => {
    // A pod as the init Job would leave it, running: the log read gets past authorization
    // (with no node and no kubelet here, the apiserver answers 204 No Content, which the
    // client cannot parse: it answers the restricted accounts exactly as it answers the admin).
    const build = 'log-probe';
    const { metadata } = await admin.core.createNamespacedPod({
      namespace: buildNamespace,
      body: {
        metadata: {
          name: `${build}-initialize`,
          labels: { 'runboat/build': build, 'runboat/job-kind': 'initialize' },
        },
        spec: { containers: [{ name: 'odoo', image: 'odoo:16' }] },
      },
    });
    const pod = await admin.core.readNamespacedPod({ name: metadata!.name!, namespace: buildNamespace });
    await admin.core.replaceNamespacedPodStatus({
      name: metadata!.name!,
      namespace: buildNamespace,
      body: { ...pod, status: { phase: 'Running' } },
    });
    const restricted = new BuildCluster(workerKc, buildNamespace);
    const logPath = `/api/v1/namespaces/${buildNamespace}/pods/${metadata!.name}/log?container=odoo`;
    const asAdmin = await httpStatus(admin.kc, logPath);
    expect(asAdmin).toBe(204);
    expect(await httpStatus(workerKc, logPath)).toBe(asAdmin);
    expect(await httpStatus(apiKc, logPath)).toBe(asAdmin);
    expect(await httpStatus(apiKc, `/api/v1/namespaces/${buildNamespace}/pods`)).toBe(200);
    // BuildCluster.readLog takes the same path: whatever it makes of the empty answer, it is
    // not refused.
    for (const kc of [workerKc, apiKc]) {
      const outcome = await new BuildCluster(kc, buildNamespace).readLog(build, 'initialize').catch((e) => e);
      expect(outcome instanceof ApiException && outcome.code === 403).toBe(false);
    }

    // Keeping a log is applying a ConfigMap, which the API may then read back.
    await restricted.apply([
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: `${build}-init-log`,
          namespace: buildNamespace,
          labels: { 'runboat/build': build },
        },
        data: { log: 'the init log' },
      } as KubernetesObject,
    ]);
    await admin.core.deleteNamespacedPod({ name: metadata!.name!, namespace: buildNamespace });
    expect(await new BuildCluster(apiKc, buildNamespace).readLog(build, 'initialize')).toBe('the init log');

    expect(await restricted.deleteBuild(build)).toBe(1);
    expect(await restricted.listBuildObjects(build)).toEqual([]);
  });

  it('lists every kind the worker deletes, and nothing is granted beyond the Role', async () => {
    const restricted = new BuildCluster(workerKc, buildNamespace);
    expect(await restricted.listBuildObjects('no-such-build')).toEqual([]);
    expect(BUILD_OBJECT_KINDS.length).toBeGreaterThan(0);

    const core = workerKc.makeApiClient(CoreV1Api);
    // Outside the build namespace: nothing.
    expect(await statusCode(core.listNamespacedSecret({ namespace: 'default' }))).toBe(403);
    expect(await statusCode(core.listNamespacedConfigMap({ namespace: serviceNamespace }))).toBe(403);
    expect(await statusCode(core.listNamespace())).toBe(403);
    // Inside it, only the verbs the code uses: no reading a Secret by name, no creating pods
    // or Roles, no exec.
    expect(await statusCode(core.readNamespacedSecret({ name: 'x', namespace: buildNamespace }))).toBe(403);
    expect(
      await statusCode(
        core.createNamespacedPod({
          namespace: buildNamespace,
          body: { metadata: { name: 'x' }, spec: { containers: [{ name: 'x', image: 'x' }] } },
        }),
      ),
    ).toBe(403);
    expect(
      await statusCode(
        workerKc.makeApiClient(RbacAuthorizationV1Api).createNamespacedRole({
          namespace: buildNamespace,
          body: { metadata: { name: 'more' }, rules: [] },
        }),
      ),
    ).toBe(403);
    expect(await statusCode(core.listNamespacedServiceAccount({ namespace: buildNamespace }))).toBe(403);
  });
});

describe("undeploying a build's objects", () => {
  const configMaps = { apiGroups: [''], resources: ['configmaps'] };

  it('takes one request a kind where the Role grants deletecollection', async () => {
    // Nothing else granted: no list, no delete of single objects.
    const kc = await accountWithRules('collection-only', [{ ...configMaps, verbs: ['deletecollection'] }]);
    const deleteNone = () =>
      statusCode(
        kc.makeApiClient(CoreV1Api).deleteCollectionNamespacedConfigMap({
          namespace: buildNamespace,
          labelSelector: 'runboat/build=no-such-build',
        }),
      );
    await waitFor('the Role in force', async () => (await deleteNone()) === 200);
    await buildConfigMaps('collected', 2);
    expect(await new BuildCluster(kc, buildNamespace).deleteBuild('collected')).toBe(2);
    expect(await admin.builds.listBuildObjects('collected')).toEqual([]);
  });

  it('lists and deletes object by object where it does not (a Role copied before it did)', async () => {
    const kc = await accountWithRules('no-collections', [{ ...configMaps, verbs: ['list', 'delete'] }]);
    const listNone = () =>
      statusCode(kc.makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace: buildNamespace }));
    await waitFor('the Role in force', async () => (await listNone()) === 200);
    await buildConfigMaps('one-by-one', 2);
    const cluster = new BuildCluster(kc, buildNamespace);
    expect(await cluster.deleteBuild('one-by-one')).toBe(2);
    expect(await admin.builds.listBuildObjects('one-by-one')).toEqual([]);
  });
});

describe('the API ServiceAccount of deploy/', () => {
  it('may read logs only', async () => {
    const core = apiKc.makeApiClient(CoreV1Api);
    expect(await statusCode(core.listNamespacedPod({ namespace: buildNamespace }))).toBe(200);
    expect(await statusCode(core.listNamespacedConfigMap({ namespace: buildNamespace }))).toBe(403);
    expect(await statusCode(core.deleteCollectionNamespacedPod({ namespace: buildNamespace }))).toBe(403);
    expect(
      await statusCode(
        apiKc.makeApiClient(AppsV1Api).listNamespacedDeployment({ namespace: buildNamespace }),
      ),
    ).toBe(403);
  });
});
