import { Client, Connection } from '@temporalio/client';
import { GitHub } from '../common/github';
import { ConfigError, loadConfig } from '../common/config';
import { logger } from '../common/logger';
import { retryWithBackoff } from '../common/retry';
import { buildCluster } from '../common/kubernetes';
import { createApp } from './app';
import { apiConnectionOptions } from './backend';

// The API process: serves HTTP on PORT until SIGTERM/SIGINT, then stops accepting
// connections, ends event streams and lets requests in flight finish.

/** How long one attempt to reach Temporal may take before it counts as failed. */
const CONNECT_ATTEMPT_MS = 5_000;

async function main(): Promise<void> {
  const config = loadConfig();
  // Connects lazily: the API starts (and answers 503) while Temporal is still coming up.
  const connection = Connection.lazy(apiConnectionOptions(config.temporalAddress));
  const client = new Client({ connection, namespace: config.temporalNamespace });
  const stopping = new AbortController();
  const { app, events, index } = createApp({
    config,
    client,
    cluster: buildCluster(config),
    github: new GitHub(config),
  });
  // Says, once per failed attempt and with the next delay, that Temporal is not there yet,
  // and when it is (requests keep answering 503 meanwhile).
  void retryWithBackoff(
    'connecting to Temporal',
    () =>
      connection.withDeadline(Date.now() + CONNECT_ATTEMPT_MS, () =>
        connection.workflowService.getSystemInfo({}),
      ),
    { signal: stopping.signal },
  ).then(
    () => {
      logger.info({ address: config.temporalAddress }, 'connected to Temporal');
      // The build index's one list of every build, before a request needs it (seconds at 7,000).
      index.warm();
    },
    () => undefined,
  );
  const server = app.listen(config.port, () => logger.info({ port: config.port }, 'API listening'));
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'API shutting down');
    stopping.abort();
    events.close();
    server.close(() => void connection.close().finally(() => process.exit(0)));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  logger.fatal(error instanceof ConfigError ? error.message : error, 'API failed');
  process.exit(1);
});
