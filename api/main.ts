import { Client, Connection } from '@temporalio/client';
import { GitHub } from '../activities/github';
import { ConfigError, loadConfig } from '../common/config';
import { logger } from '../common/logger';
import { buildCluster } from '../worker/worker';
import { createApp } from './app';

// The API process: serves HTTP on PORT until SIGTERM/SIGINT, then stops accepting
// connections, ends event streams and lets requests in flight finish.

async function main(): Promise<void> {
  const config = loadConfig();
  // Connects lazily: the API starts (and answers 503) while Temporal is still coming up.
  const connection = Connection.lazy({ address: config.temporalAddress });
  const client = new Client({ connection, namespace: config.temporalNamespace });
  const { app, events } = createApp({
    config,
    client,
    cluster: buildCluster(config),
    github: new GitHub(config),
  });
  const server = app.listen(config.port, () => logger.info({ port: config.port }, 'API listening'));
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'API shutting down');
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
