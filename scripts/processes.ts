import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import net from 'node:net';

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface Daemon {
  name: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a long-running process whose output goes to `logFile`; `stop` waits for it to exit. */
export function startDaemon(name: string, command: string, args: string[], logFile: string): Daemon {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (error) => log.write(`failed to start ${command}: ${error.message}\n`));
  return {
    name,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      log.end();
    },
  };
}

/** Polls `probe` until it resolves true; fails with the daemon's log path if it exits first. */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  options: { timeoutMs: number; daemon?: Daemon; logFile?: string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (options.daemon && options.daemon.process.exitCode !== null) {
      throw new Error(
        `${options.daemon.name} exited with ${options.daemon.process.exitCode}; see ${options.logFile}`,
      );
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; see ${options.logFile}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
