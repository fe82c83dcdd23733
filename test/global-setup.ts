import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startControlPlane } from '../scripts/control-plane';
import { freePort } from '../scripts/processes';
import { startTemporalDevServer } from '../scripts/temporal-dev';
import { temporalNamespaceOf } from './namespaces';

// One real Temporal dev server and one real kube-apiserver (on etcd) for the whole run; each
// test file works in its own Temporal namespace, and each of its configurations in its own
// Kubernetes namespace and task queue.

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    /** The dev server's Prometheus metrics (what it reads from its database, say). */
    temporalMetricsUrl: string;
    kubeconfig: string;
  }
}

export default async function setup(project: TestProject) {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-test-'));
  const started = Date.now();
  const [temporal, controlPlane] = await Promise.all([
    startTemporalDevServer(workDir, {
      namespaces: readdirSync(__dirname)
        .filter((file) => file.endsWith('.test.ts'))
        .map(temporalNamespaceOf),
      metricsPort: await freePort(),
    }),
    startControlPlane(path.join(workDir, 'kube')),
  ]);
  console.log(`substrate up in ${Date.now() - started} ms (logs in ${workDir})`);
  project.provide('temporalAddress', temporal.address);
  project.provide('temporalMetricsUrl', temporal.metricsUrl as string);
  project.provide('kubeconfig', controlPlane.kubeconfigPath);
  return async () => {
    await Promise.all([temporal.stop(), controlPlane.stop()]);
    rmSync(workDir, { recursive: true, force: true });
  };
}
