import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { GitHub } from '../common/github';
import { BuildCluster } from '../common/kubernetes';
import { closeKustomizeRenderers } from '../activities/kustomize';
import { createApp } from '../api/app';
import { ConfigError, loadConfig, withDotEnv } from '../common/config';
import { logger } from '../common/logger';
import { installRuntime } from '../worker/runtime';
import {
  ensureEvictionSchedule,
  ensureOrphanSweepSchedule,
  ensureWebhookRedeliverySchedule,
} from '../worker/schedule';
import { createWorker } from '../worker/worker';
import { binary, cacheDir } from './paths';
import { claimStateDir, releaseStateDir, step } from './processes';
import { startSimulatedCluster } from './simulated-cluster';
import { startTemporalDevServer } from './temporal-dev';
import { startTemporalPostgres } from './temporal-postgres';

// `npm start`: the whole service on one machine. Starts a Temporal dev server (with its Web UI)
// unless TEMPORAL_ADDRESS is given (RUNBOAT_LOCAL_TEMPORAL=postgres: the production shape, a
// Temporal server on PostgreSQL, with no Web UI), and a simulated cluster (real control plane, kwok nodes)
// unless KUBECONFIG is given, both keeping their data under the state folder so that builds
// survive a restart; then runs the worker and the API until Ctrl-C.

const IMAGE = 'ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest';

export const DEMO_DEFAULTS: Record<string, string> = {
  RUNBOAT_BUILD_NAMESPACE: 'runboat-builds',
  RUNBOAT_BUILD_DOMAIN: 'runboat.localhost',
  // Branches named fail-* fail their init in the simulated cluster, to show both outcomes.
  RUNBOAT_REPOS: JSON.stringify([
    {
      repo: '.*',
      branch: '^fail-',
      builds: [{ image: IMAGE, template_vars: { simulate_init_failure: true } }],
    },
    { repo: '.*', branch: '.*', builds: [{ image: IMAGE }] },
  ]),
  RUNBOAT_API_ADMIN_USER: 'admin',
  RUNBOAT_API_ADMIN_PASSWD: 'admin',
  RUNBOAT_GITHUB_WEBHOOK_SECRET: 'demo-secret',
  RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
  // The demo repos are not yours to post statuses on; set a token and turn them back on.
  RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
};

const stateDir = process.env.RUNBOAT_LOCAL_STATE_DIR ?? path.join(cacheDir, 'local');

/** Every start-up step has a bound: a start that cannot finish says which step and fails. */
const STEP_TIMEOUT_MS = 120_000;

// What to stop, last started first: on Ctrl-C, and when the start fails half-way.
const stack: Array<() => Promise<void>> = [];
const stopAll = async () => {
  for (const stop of stack.splice(0).reverse())
    await stop().catch((error: unknown) => logger.error({ err: error }, 'stop failed'));
  await releaseStateDir().catch((error: unknown) => logger.error({ err: error }, 'stop failed'));
};

async function main(): Promise<void> {
  const env: NodeJS.ProcessEnv = { ...DEMO_DEFAULTS, ...withDotEnv(process.env) };
  let stopping = false;
  const stop = (signal: string) => {
    // A second Ctrl-C (or a signal sent to the whole process group as well as relayed) must not
    // end this process before its daemons: they would be left running until the next start.
    if (stopping) return logger.warn({ signal }, 'already stopping: the daemons are being ended');
    stopping = true;
    logger.info({ signal }, 'stopping');
    void stopAll().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // A run killed before it could stop its children left them running: end them first.
  mkdirSync(stateDir, { recursive: true });
  await claimStateDir(path.join(stateDir, 'children.json'));

  let temporalUi = true;
  if (!env.TEMPORAL_ADDRESS && env.RUNBOAT_LOCAL_TEMPORAL === 'postgres') {
    const temporal = await startTemporalPostgres(path.join(stateDir, 'temporal-postgres'), {
      port: Number(env.RUNBOAT_LOCAL_TEMPORAL_PORT ?? 7233),
    });
    stack.push(temporal.stop);
    env.TEMPORAL_ADDRESS = temporal.address;
    temporalUi = env.RUNBOAT_TEMPORAL_UI_URL !== undefined;
  } else if (!env.TEMPORAL_ADDRESS) {
    const dir = path.join(stateDir, 'temporal');
    const temporal = await step('starting the Temporal dev server', STEP_TIMEOUT_MS, () =>
      startTemporalDevServer(dir, {
        port: Number(env.RUNBOAT_LOCAL_TEMPORAL_PORT ?? 7233),
        uiPort: Number(env.RUNBOAT_LOCAL_TEMPORAL_UI_PORT ?? 8233),
        dbFile: path.join(dir, 'temporal.db'),
      }),
    );
    stack.push(temporal.stop);
    env.TEMPORAL_ADDRESS = temporal.address;
    env.RUNBOAT_TEMPORAL_UI_URL ??= temporal.uiUrl;
  }
  if (!env.KUBECONFIG) {
    // etcd (30 s), kube-apiserver (90 s) and the kwok nodes (60 s) each have their own bound.
    const cluster = await step('starting the simulated cluster', 4 * 60_000, () =>
      startSimulatedCluster(path.join(stateDir, 'kubernetes')),
    );
    stack.push(cluster.stop);
    env.KUBECONFIG = cluster.kubeconfigPath;
  }
  env.RUNBOAT_BASE_URL ??= `http://localhost:${env.PORT ?? 8000}`;
  const config = loadConfig(env);
  installRuntime(config);

  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(env.KUBECONFIG);
  await step('creating the build namespace', STEP_TIMEOUT_MS, () =>
    ensureNamespace(kubeConfig, config.buildNamespace),
  );
  const cluster = new BuildCluster(kubeConfig, config.buildNamespace, config.deploymentResourceTypes);

  const connection = await step('connecting to Temporal', STEP_TIMEOUT_MS, () =>
    Connection.connect({ address: config.temporalAddress }),
  );
  stack.push(() => connection.close());
  const client = new Client({ connection, namespace: config.temporalNamespace });
  await step('creating the eviction schedule', STEP_TIMEOUT_MS, () => ensureEvictionSchedule(client, config));
  await step('creating the orphan sweep schedule', STEP_TIMEOUT_MS, () =>
    ensureOrphanSweepSchedule(client, config),
  );
  await step('creating the webhook redelivery schedule', STEP_TIMEOUT_MS, () =>
    ensureWebhookRedeliverySchedule(client, config),
  );

  const nativeConnection = await step('connecting the worker to Temporal', STEP_TIMEOUT_MS, () =>
    NativeConnection.connect({ address: config.temporalAddress }),
  );
  stack.push(() => nativeConnection.close());
  const worker = await step('creating the worker (bundling workflows)', STEP_TIMEOUT_MS, () =>
    createWorker(config, nativeConnection, cluster),
  );
  const running = worker.run();
  stack.push(async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
    await closeKustomizeRenderers();
  });

  const { app, events } = createApp({ config, client, cluster, github: new GitHub(config) });
  const server = app.listen(config.port);
  await step(`listening on port ${config.port}`, STEP_TIMEOUT_MS, async () => {
    await new Promise((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
  });
  stack.push(async () => {
    events.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const url = `http://localhost:${config.port}`;
  logger.info(
    { builds: `${url}/`, temporalWebUi: config.temporalUiUrl, kubeconfig: env.KUBECONFIG },
    'runboat is up',
  );
  process.stdout.write(
    [
      '',
      `  Builds:           ${url}/`,
      `  API:              ${url}/api/v1/builds`,
      `  Temporal Web UI:  ${temporalUi ? config.temporalUiUrl : 'none (Temporal on PostgreSQL runs without one)'}`,
      `  Kubernetes:       KUBECONFIG=${env.KUBECONFIG}`,
      '',
      `  Send demo webhooks:  npm run demo -- ${url}`,
      '',
    ].join('\n') + '\n',
  );
}

async function ensureNamespace(kubeConfig: KubeConfig, name: string): Promise<void> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name } } }).catch((error: { code?: number }) => {
    if (error.code !== 409) throw error;
  });
}

main().catch(async (error: unknown) => {
  logger.fatal(error instanceof ConfigError ? error.message : error, 'local run failed');
  // Whatever started is stopped: a failed start leaves nothing behind either.
  await stopAll();
  process.exit(1);
});
