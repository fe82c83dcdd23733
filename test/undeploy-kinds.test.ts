import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubernetesObjectApi } from '@kubernetes/client-node';
import { afterAll, expect, it } from 'vitest';
import { sendBuildCommand, startBuild } from '../api/build-client';
import { BuildCluster } from '../common/kubernetes';
import { DEFAULT_KUBEFILES_PATH } from '../common/config';
import { buildWorkflowId } from '../workflows/definitions';
import { useStack } from './api-server';
import { SHA, spawnWorkerProcess, testConfig, waitFor } from './helpers';

// A kubefile may create kinds beyond the contract's (a NetworkPolicy, a CronJob): undeploy
// deletes them too, found by API discovery rather than from a fixed list. And kubefiles kept from
// runboat put its cleanup finalizer on the Deployment, which nothing but the undeploy removes.

/**
 * The default kubefiles, plus a NetworkPolicy and a CronJob in `deployment` mode, and the
 * Deployment's `runboat/cleanup` finalizer as runboat's own deployment.yaml has it.
 */
const kubefiles = mkdtempSync(path.join(os.tmpdir(), 'runboat-extra-kinds-'));
cpSync(DEFAULT_KUBEFILES_PATH, kubefiles, { recursive: true });
const deploymentFile = path.join(kubefiles, 'deployment.yaml');
writeFileSync(
  deploymentFile,
  readFileSync(deploymentFile, 'utf8').replace(
    '  name: odoo\n',
    '  name: odoo\n  finalizers:\n    - runboat/cleanup\n',
  ),
);
const kustomization = path.join(kubefiles, 'kustomization.yaml.jinja');
writeFileSync(
  kustomization,
  readFileSync(kustomization, 'utf8').replace('  - ingress.yaml\n', '  - ingress.yaml\n  - extra.yaml\n'),
);
writeFileSync(
  path.join(kubefiles, 'extra.yaml'),
  `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: isolate
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: backup
              image: odoo
`,
);

const config = testConfig({
  RUNBOAT_NO_CLEANUP_JOB: 'true',
  RUNBOAT_REPOS: JSON.stringify([
    { repo: '^oca/', branch: '^16.0$', builds: [{ image: 'odoo:16.0', kubefiles_path: kubefiles }] },
  ]),
});
const stack = useStack(config);

afterAll(() => rmSync(kubefiles, { recursive: true, force: true }));

it('deletes every kind the kubefiles created, beyond the contract, on undeploy', async () => {
  const objects = KubernetesObjectApi.makeApiClient(stack.cluster.kc);
  const extra = async (name: string) => {
    const selector = `runboat/build=${name}`;
    const list = (apiVersion: string, kind: string) =>
      objects.list(
        apiVersion,
        kind,
        config.buildNamespace,
        undefined,
        undefined,
        undefined,
        undefined,
        selector,
      );
    const [policies, cronJobs] = await Promise.all([
      list('networking.k8s.io/v1', 'NetworkPolicy'),
      list('batch/v1', 'CronJob'),
    ]);
    return [...policies.items, ...cronJobs.items].map((o) => o.metadata?.name);
  };
  const build = await startBuild(stack.temporal.client, config, {
    repo: 'oca/extra',
    target_branch: '16.0',
    pr: null,
    git_commit: SHA('e'),
  });
  await waitFor('the extra objects', async () => (await extra(build.name)).length === 2);

  await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
  await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
  expect(await extra(build.name)).toEqual([]);
  expect(await stack.cluster.builds.listBuildObjects(build.name)).toEqual([]);
});

it("deletes a Deployment that carries runboat's cleanup finalizer, its cleanup done", async () => {
  const build = await startBuild(stack.temporal.client, config, {
    repo: 'oca/fin',
    target_branch: '16.0',
    pr: 7,
    git_commit: SHA('f'),
  });
  await waitFor('the Deployment', async () => (await stack.cluster.deployment(build.name)) !== undefined);
  expect((await stack.cluster.deployment(build.name)).metadata?.finalizers).toEqual(['runboat/cleanup']);

  await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
  await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
  // Left Terminating by the finalizer, the Deployment would keep its ReplicaSets and pods too.
  expect(await stack.cluster.deployment(build.name)).toBeUndefined();
  expect(await stack.cluster.builds.listBuildObjects(build.name)).toEqual([]);
});

it('honours RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: those kinds are required, an unknown one is an error', async () => {
  const cluster = new BuildCluster(stack.cluster.kc, config.buildNamespace, [
    'deployment',
    'pvc',
    'networkpolicies.networking.k8s.io',
    'cj',
  ]);
  const kinds = await cluster.objectKinds();
  const required = kinds.filter((kind) => kind.required).map((kind) => `${kind.apiVersion}/${kind.kind}`);
  expect(required.sort()).toEqual([
    'apps/v1/Deployment',
    'batch/v1/CronJob',
    'networking.k8s.io/v1/NetworkPolicy',
    'v1/PersistentVolumeClaim',
  ]);
  // Beyond those, whatever the namespace can hold, contract kinds first, events never.
  expect(kinds.slice(0, 2).map((kind) => kind.kind)).toEqual(['Deployment', 'Job']);
  expect(kinds.map((kind) => kind.kind)).toContain('Role');
  expect(kinds.map((kind) => kind.kind)).not.toContain('Event');

  const misspelt = new BuildCluster(stack.cluster.kc, config.buildNamespace, ['deployment', 'netpolicy']);
  await expect(misspelt.deleteBuild('any')).rejects.toThrow(
    'RUNBOAT_DEPLOYMENT_RESOURCE_TYPES names types the cluster does not serve: netpolicy',
  );
});

it('stops a worker whose RUNBOAT_DEPLOYMENT_RESOURCE_TYPES the cluster does not serve, at start-up', async () => {
  const lines: string[] = [];
  const worker = spawnWorkerProcess(
    config,
    { RUNBOAT_DEPLOYMENT_RESOURCE_TYPES: 'deployment,netpolicy' },
    (line) => lines.push(line),
  );
  const code = await new Promise((resolve) => worker.once('exit', resolve));
  expect(code).toBe(1);
  expect(lines.join('\n')).toContain(
    'invalid configuration: RUNBOAT_DEPLOYMENT_RESOURCE_TYPES names types the cluster does not serve: netpolicy',
  );
});
