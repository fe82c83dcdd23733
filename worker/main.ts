import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { closeKustomizeRenderers } from '../activities/kustomize';
import { ConfigError, loadConfig } from '../common/config';
import { logger } from '../common/logger';
import { installRuntime } from './runtime';
import { ensureEvictionSchedule } from './schedule';
import { createWorker } from './worker';

// The worker process: runs build workflows and their activities until SIGTERM/SIGINT, when
// it stops polling and lets in-flight activities finish (the SDK's graceful shutdown).

async function main(): Promise<void> {
  const config = loadConfig();
  installRuntime(config);
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const clientConnection = await Connection.connect({ address: config.temporalAddress });
  try {
    await ensureEvictionSchedule(
      new Client({ connection: clientConnection, namespace: config.temporalNamespace }),
      config,
    );
    const worker = await createWorker(config, connection);
    logger.info({ taskQueue: config.taskQueue, namespace: config.buildNamespace }, 'worker started');
    await worker.run();
  } finally {
    await closeKustomizeRenderers();
    await clientConnection.close();
    await connection.close();
  }
}

main().catch((error: unknown) => {
  logger.fatal(error instanceof ConfigError ? error.message : error, 'worker failed');
  process.exit(1);
});
