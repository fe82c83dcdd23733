import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { BuildCluster } from '../activities/kubernetes';
import type { Config } from '../common/config';

/** Kubernetes access from `KUBECONFIG`, the default kubeconfig, or the in-cluster service account. */
export function buildCluster(config: Config): BuildCluster {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return new BuildCluster(kubeConfig, config.buildNamespace);
}

export async function createWorker(
  config: Config,
  connection: NativeConnection,
  cluster: BuildCluster = buildCluster(config),
): Promise<Worker> {
  return Worker.create({
    connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    // A folder, so that the bundler resolves its index whether this runs from .ts or built .js.
    workflowsPath: path.resolve(__dirname, '..', 'workflows'),
    activities: createActivities(config, cluster),
  });
}
