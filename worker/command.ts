import { Client, Connection } from '@temporalio/client';
import { loadConfig, type Config } from '../common/config';

/**
 * Runs an operator's command (`npm run orphans`, `npm run patch-census`) with the worker's
 * configuration and a client of its Temporal namespace; an error is printed and exits 1.
 */
export function runCommand(command: (client: Client, config: Config) => Promise<void>): void {
  const run = async () => {
    const config = loadConfig();
    const connection = await Connection.connect({ address: config.temporalAddress });
    try {
      await command(new Client({ connection, namespace: config.temporalNamespace }), config);
    } finally {
      await connection.close();
    }
  };
  run().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
