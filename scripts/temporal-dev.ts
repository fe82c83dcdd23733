import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { searchAttributeDeclarations } from '../common/search-attributes';
import { binary } from './paths';
import { freePort, startDaemon, waitUntil } from './processes';

export interface TemporalDevServer {
  address: string;
  uiUrl: string;
  /** The server's pid, for CPU accounting. */
  pid: number;
  stop(): Promise<void>;
}

/** `temporal server start-dev` on loopback with the project's search attributes registered. */
export async function startTemporalDevServer(
  workDir: string,
  options: { port?: number; uiPort?: number; dbFile?: string } = {},
): Promise<TemporalDevServer> {
  mkdirSync(workDir, { recursive: true });
  const port = options.port ?? (await freePort());
  const uiPort = options.uiPort ?? (await freePort());
  const logFile = path.join(workDir, 'temporal.log');
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', `${port}`, '--ui-port', `${uiPort}`];
  args.push(
    '--log-level',
    'warn',
    ...searchAttributeDeclarations().flatMap((sa) => ['--search-attribute', sa]),
  );
  if (options.dbFile) args.push('--db-filename', options.dbFile);
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
    stop: () => daemon.stop(),
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
