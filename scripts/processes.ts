import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger } from '../common/logger';
import { WORKER_PROCESS } from '../worker/worker';

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

/** Whether something accepts TCP connections on the loopback `port` (within 2 s). */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * One of the service's own processes (`worker/main.ts`, `api/main.ts`) under tsx, as it is
 * deployed: a process of its own, to measure, kill or scale out, the worker with the bounds
 * of `WORKER_PROCESS`. Its output goes to `logFile` and, line by line, to `onLine`; nowhere
 * if neither is given.
 */
export function spawnService(
  main: string,
  env: NodeJS.ProcessEnv,
  output: { logFile?: string; onLine?: (line: string) => void; nodeArgs?: readonly string[] } = {},
): ChildProcess {
  const root = path.resolve(__dirname, '..');
  const piped = output.logFile !== undefined || output.onLine !== undefined;
  const deployed = main === 'worker/main.ts' ? WORKER_PROCESS : { nodeArgs: [], env: {} };
  const nodeArgs = [...deployed.nodeArgs, ...(output.nodeArgs ?? [])];
  const child = spawn(process.execPath, ['--import', 'tsx', ...nodeArgs, path.join(root, main)], {
    cwd: root,
    env: { ...env, ...deployed.env },
    stdio: piped ? ['ignore', 'pipe', 'pipe'] : 'ignore',
  });
  if (output.logFile) {
    const log = createWriteStream(output.logFile, { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
  }
  const { onLine } = output;
  if (onLine) {
    for (const stream of [child.stdout, child.stderr]) {
      let buffered = '';
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        const lines = (buffered + chunk).split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) onLine(line);
      });
    }
  }
  return child;
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
  record(child, name, [command, ...args]);
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

/**
 * Polls `probe` every `intervalMs` (200) until it resolves true; fails with the daemon's log
 * path if it exits first, and with a clear message after `timeoutMs`. A probe that hangs (a
 * server that accepts the connection and never answers) counts as false after
 * `probeTimeoutMs`, so the deadline holds.
 */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  options: {
    timeoutMs: number;
    daemon?: Daemon;
    logFile?: string;
    probeTimeoutMs?: number;
    intervalMs?: number;
  },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const see = options.logFile ? `; see ${options.logFile}` : '';
  for (;;) {
    const { daemon } = options;
    if (daemon && (daemon.process.exitCode !== null || daemon.process.signalCode !== null)) {
      throw new Error(
        `${daemon.name} exited with ${daemon.process.exitCode ?? daemon.process.signalCode}${see}`,
      );
    }
    const budget = Math.max(1, Math.min(options.probeTimeoutMs ?? 5_000, deadline - Date.now()));
    if (await withTimeout(probe(), budget, false).catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${options.timeoutMs / 1000} s waiting for ${what}${see}`);
    }
    await sleep(options.intervalMs ?? 200);
  }
}

/** `promise`, or `fallback` if it has not settled within `ms` (a start-up step that hangs). */
export async function withTimeout<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a start-up step, failing with a message that names it if it takes over `ms`. */
export async function step<T>(what: string, ms: number, run: () => Promise<T>): Promise<T> {
  const timeout = Symbol('timeout');
  const result = await withTimeout<T | typeof timeout>(run(), ms, timeout);
  if (result === timeout) throw new Error(`timed out after ${ms / 1000} s: ${what}`);
  return result;
}

// The children of a local run, recorded in a pid file in its state folder. A run that dies
// without stopping them (SIGKILL, out of memory, a closed terminal) leaves Temporal, etcd and
// the Kubernetes daemons holding their ports and etcd's data folder; the next run on the same
// folder ends them before starting its own. A pid is only signalled while its command line is
// still the one recorded, so a pid the system has since reused is left alone.

interface RecordedProcess {
  pid: number;
  name: string;
  commandLine: string;
}

let pidFile: string | undefined;
const recorded = new Map<number, RecordedProcess>();

function record(child: ChildProcess, name: string, argv: string[]): void {
  if (!pidFile || child.pid === undefined) return;
  const pid = child.pid;
  recorded.set(pid, { pid, name, commandLine: argv.join(' ') });
  writePidFile();
  child.once('exit', () => {
    recorded.delete(pid);
    writePidFile();
  });
}

function writePidFile(): void {
  if (!pidFile) return;
  const temporary = `${pidFile}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify([...recorded.values()], null, 2) + '\n');
  renameSync(temporary, pidFile);
}

/** A process's command line, arguments joined by spaces; undefined once it is gone (or a zombie). */
function commandLineOf(pid: number): string | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return line || undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || process.platform === 'linux') return undefined;
  }
  try {
    return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const stillRunning = (entry: RecordedProcess) => commandLineOf(entry.pid) === entry.commandLine;

/**
 * Makes this process the owner of `stateDir`'s pid file: refuses if another live run owns it,
 * ends the processes a dead run left behind (SIGTERM, then SIGKILL), then records this run's
 * children as they start. `releaseStateDir` deletes the file after a clean stop.
 */
export async function claimStateDir(file: string, timeoutMs = 20_000): Promise<void> {
  let previous: RecordedProcess[] = [];
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as RecordedProcess[];
  } catch {
    // No file (first run, or the last one stopped cleanly), or an unreadable one.
  }
  const [owner, ...children] = previous;
  if (owner && owner.pid !== process.pid && stillRunning(owner)) {
    throw new Error(`another local run (pid ${owner.pid}) is using ${file}; stop it first`);
  }
  const stale = children.filter(stillRunning);
  if (stale.length) {
    logger.warn(
      { processes: stale.map(({ pid, name }) => ({ pid, name })) },
      'ending processes a previous local run left behind',
    );
    await endProcesses(stale, timeoutMs);
  }
  pidFile = file;
  recorded.clear();
  const self = commandLineOf(process.pid);
  recorded.set(process.pid, { pid: process.pid, name: 'local-run', commandLine: self ?? '' });
  writePidFile();
}

/** Ends the children still recorded (a start that failed half-way), then deletes the pid file. */
export async function releaseStateDir(): Promise<void> {
  if (!pidFile) return;
  await endProcesses(
    [...recorded.values()].filter((entry) => entry.pid !== process.pid && stillRunning(entry)),
    20_000,
  );
  rmSync(pidFile, { force: true });
  pidFile = undefined;
  recorded.clear();
}

/** SIGTERM, then SIGKILL after half of `timeoutMs`; fails naming those still there after it. */
async function endProcesses(processes: RecordedProcess[], timeoutMs: number): Promise<void> {
  const gone = () => processes.every((entry) => !stillRunning(entry));
  for (const [name, wait] of [
    ['SIGTERM', timeoutMs / 2],
    ['SIGKILL', timeoutMs / 2],
  ] as const) {
    if (gone()) return;
    for (const entry of processes.filter(stillRunning)) signal(entry.pid, name);
    const deadline = Date.now() + wait;
    while (!gone() && Date.now() < deadline) await sleep(100);
  }
  const left = processes.filter(stillRunning);
  if (left.length) {
    throw new Error(`could not end ${left.map(({ name, pid }) => `${name} (pid ${pid})`).join(', ')}`);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone in the meantime.
  }
}
