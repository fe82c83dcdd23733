import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { searchAttributeDeclarations } from '../common/search-attributes';
import { binary } from './paths';
import { canConnect, freePort, startDaemon, waitUntil } from './processes';

export interface TemporalDevServer {
  address: string;
  uiUrl: string;
  /** The server's process id, for the benchmark's accounting. */
  pid: number;
  /** Its Prometheus metrics, when started with `metricsPort`. */
  metricsUrl?: string;
  stop(): Promise<void>;
}

/**
 * `temporal server start-dev` on loopback with the project's search attributes registered, in
 * the `default` namespace and in each of `namespaces`.
 */
export async function startTemporalDevServer(
  workDir: string,
  options: {
    port?: number;
    uiPort?: number;
    dbFile?: string;
    namespaces?: string[];
    metricsPort?: number;
  } = {},
): Promise<TemporalDevServer> {
  mkdirSync(workDir, { recursive: true });
  if (options.port !== undefined && (await canConnect(options.port))) {
    // Another server there would answer the readiness check in the new one's stead.
    throw new Error(`cannot start the Temporal dev server: port ${options.port} is already in use`);
  }
  const port = options.port ?? (await freePort());
  const uiPort = options.uiPort ?? (await freePort());
  const logFile = path.join(workDir, 'temporal.log');
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', `${port}`, '--ui-port', `${uiPort}`];
  args.push(
    '--log-level',
    'warn',
    ...searchAttributeDeclarations().flatMap((sa) => ['--search-attribute', sa]),
    ...(options.namespaces ?? []).flatMap((namespace) => ['--namespace', namespace]),
    // The CLI turns the search attributes' cache off so that attributes added at run time show
    // at once; ours are all registered above, before the server starts. With the cache off,
    // every start, upsert and list read the cluster metadata through the in-memory database's
    // one connection, which a burst's starts queue for.
    '--dynamic-config-value',
    'system.forceSearchAttributesCacheRefreshOnRead=false',
  );
  if (options.dbFile) args.push('--db-filename', options.dbFile);
  if (options.metricsPort !== undefined) args.push('--metrics-port', `${options.metricsPort}`);
  const daemon = startDaemon('temporal', binary('temporal'), args, logFile);
  try {
    await waitUntil('Temporal dev server', () => canConnect(port), { timeoutMs: 60_000, daemon, logFile });
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  return {
    address: `127.0.0.1:${port}`,
    uiUrl: `http://127.0.0.1:${uiPort}`,
    pid: daemon.process.pid as number,
    metricsUrl:
      options.metricsPort === undefined ? undefined : `http://127.0.0.1:${options.metricsPort}/metrics`,
    stop: () => daemon.stop(),
  };
}
