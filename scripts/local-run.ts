import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import path from 'node:path';
import { BuildCluster } from '../activities/kubernetes';
import { ConfigError, loadConfig, withDotEnv } from '../common/config';
import { logger } from '../common/logger';
import { ensureEvictionSchedule } from '../worker/schedule';
import { createWorker } from '../worker/worker';
import { startControlPlane } from './control-plane';
import { binary, cacheDir } from './paths';
import { startTemporalDevServer } from './temporal-dev';

// `npm start`: the service on one machine. Starts a Temporal dev server unless TEMPORAL_ADDRESS
// is given and a local control plane unless KUBECONFIG is given, both keeping their data in
// the cache folder so that builds survive a restart; then runs the worker until Ctrl-C.

const DEMO_DEFAULTS: Record<string, string> = {
  RUNBOAT_BUILD_NAMESPACE: 'runboat-builds',
  RUNBOAT_BUILD_DOMAIN: 'runboat.localhost',
  RUNBOAT_REPOS: JSON.stringify([
    { repo: '.*', branch: '.*', builds: [{ image: 'ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest' }] },
  ]),
  RUNBOAT_KUBECTL: binary('kubectl'),
  // The demo repos are not yours to post statuses on; set a token and turn them back on.
  RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
};

async function main(): Promise<void> {
  const env = { ...DEMO_DEFAULTS, ...withDotEnv(process.env) };
  const stack: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stack.reverse()) await stop();
  };
  try {
    if (!env.TEMPORAL_ADDRESS) {
      const dir = path.join(cacheDir, 'local', 'temporal');
      const temporal = await startTemporalDevServer(dir, {
        port: 7233,
        uiPort: 8233,
        dbFile: path.join(dir, 'temporal.db'),
      });
      stack.push(temporal.stop);
      env.TEMPORAL_ADDRESS = temporal.address;
      logger.info({ address: temporal.address, webUi: temporal.uiUrl }, 'Temporal dev server started');
    }
    if (!env.KUBECONFIG) {
      const controlPlane = await startControlPlane(path.join(cacheDir, 'local', 'kubernetes'));
      stack.push(controlPlane.stop);
      env.KUBECONFIG = controlPlane.kubeconfigPath;
      logger.info(
        { server: controlPlane.server, kubeconfig: controlPlane.kubeconfigPath },
        'local control plane started',
      );
    }
    const config = loadConfig(env);
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(env.KUBECONFIG);
    await ensureNamespace(kubeConfig, config.buildNamespace);
    const connection = await NativeConnection.connect({ address: config.temporalAddress });
    stack.push(() => connection.close());
    const clientConnection = await Connection.connect({ address: config.temporalAddress });
    stack.push(() => clientConnection.close());
    const client = new Client({ connection: clientConnection, namespace: config.temporalNamespace });
    await ensureEvictionSchedule(client, config);
    const worker = await createWorker(
      config,
      connection,
      new BuildCluster(kubeConfig, config.buildNamespace),
    );
    // The SDK shuts the worker down gracefully on SIGINT/SIGTERM; run() then returns.
    await worker.run();
  } finally {
    await stopAll();
  }
}

async function ensureNamespace(kubeConfig: KubeConfig, name: string): Promise<void> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name } } }).catch((error: { code?: number }) => {
    if (error.code !== 409) throw error;
  });
}

main().catch((error: unknown) => {
  logger.fatal(error instanceof ConfigError ? error.message : error, 'local run failed');
  process.exit(1);
});
