import { execFile } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { parse } from 'yaml';
import { binary, cacheDir } from './paths';
import { canConnect, freePort, startDaemon, waitUntil, type Daemon } from './processes';

// The production shape on one machine: Debian's PostgreSQL in a scratch folder on a loopback
// port, Temporal's schemas set up by temporal-sql-tool, and the Temporal server built from
// go.temporal.io/server (all four services in one process, SQL visibility), with the namespace
// and the project's search attributes registered. The schema and setup steps are the very
// scripts of docker-compose.yml's `temporal-schema` and `temporal-setup` services, so that
// what the tests run and what compose deploys cannot drift apart.
// Provisioned by `scripts/provision.sh temporal-server`.

const run = promisify(execFile);
const root = path.resolve(__dirname, '..');
const DB_USER = 'temporal';
const DB_PASSWORD = 'temporal';
export const NUM_HISTORY_SHARDS = 4;

export interface TemporalPostgresServer {
  address: string;
  /** PostgreSQL's data folder (its disk use is what the builds cost it). */
  pgDataDir: string;
  /** The Temporal server's pid and PostgreSQL's postmaster pid, for CPU accounting. */
  pids(): { temporal: number; postgres: number };
  /** Stops the Temporal server and starts it again on the same ports and databases. */
  restartTemporal(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether `scripts/provision.sh temporal-server` has run on this machine. */
export function temporalPostgresProvisioned(): string | undefined {
  if (!existsSync(binary('temporal-server'))) return `no ${binary('temporal-server')}`;
  if (!existsSync(binary('temporal-sql-tool'))) return `no ${binary('temporal-sql-tool')}`;
  if (!postgresBinDir()) return 'no PostgreSQL in /usr/lib/postgresql/*/bin';
  return undefined;
}

/** Debian's PostgreSQL binaries (the highest version installed). */
function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(path.join(base, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(base, versions[0], 'bin') : undefined;
}

export async function startTemporalPostgres(
  workDir: string,
  options: { port?: number; namespace?: string } = {},
): Promise<TemporalPostgresServer> {
  const missing = temporalPostgresProvisioned();
  if (missing) throw new Error(`${missing}: run scripts/provision.sh temporal-server`);
  const pgBin = postgresBinDir() as string;
  const namespace = options.namespace ?? 'default';
  mkdirSync(workDir, { recursive: true });
  const stack: Daemon[] = [];
  const stopAll = async () => {
    for (const daemon of stack.splice(0).reverse()) await daemon.stop();
  };
  try {
    const pg = await startPostgres(workDir, pgBin);
    stack.push(pg.daemon);
    const schemaLog = path.join(workDir, 'temporal-setup.log');
    await composeScript('temporal-schema', schemaLog, {
      SQL_PLUGIN: 'postgres12',
      SQL_HOST: '127.0.0.1',
      SQL_PORT: String(pg.port),
      SQL_USER: DB_USER,
      SQL_PASSWORD: DB_PASSWORD,
      TEMPORAL_SCHEMA_DIR: path.join(cacheDir, 'temporal-server-schema'),
    });

    const port = options.port ?? (await freePort());
    const configFile = await writeServerConfig(workDir, port, pg.port);
    const logFile = path.join(workDir, 'temporal-server.log');
    const address = `127.0.0.1:${port}`;
    const startServer = async () => {
      const daemon = startDaemon(
        'temporal-server',
        binary('temporal-server'),
        ['--config-file', configFile, '--allow-no-auth', 'start'],
        logFile,
      );
      await waitUntil('the Temporal server', () => canConnect(port), { timeoutMs: 120_000, daemon, logFile });
      return daemon;
    };
    let server = await startServer();
    stack.push(server);
    await composeScript('temporal-setup', schemaLog, {
      TEMPORAL_ADDRESS: address,
      RUNBOAT_TEMPORAL_NAMESPACE: namespace,
    });
    await searchAttributesServed(address, namespace, logFile);

    return {
      address,
      pgDataDir: pg.dataDir,
      pids: () => ({ temporal: server.process.pid as number, postgres: pg.daemon.process.pid as number }),
      async restartTemporal() {
        await server.stop();
        stack.splice(stack.indexOf(server), 1);
        server = await startServer();
        stack.push(server);
        await searchAttributesServed(address, namespace, logFile);
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * initdb (once) and postgres on a loopback port, TCP only. PostgreSQL refuses to run as root:
 * as root, both run as the `postgres` user of Debian's package (setpriv execs, so the daemon's
 * pid is the postmaster's), in a folder that user owns.
 */
async function startPostgres(workDir: string, pgBin: string) {
  const pgDir = path.join(workDir, 'postgresql');
  const dataDir = path.join(pgDir, 'data');
  mkdirSync(pgDir, { recursive: true });
  let asUser: string[] = [];
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const uid = Number(stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(pgDir, uid, gid);
    // The postgres user must be able to reach its folder: scratch folders (mkdtemp makes them
    // 0700) get search permission; folders elsewhere are left as they are.
    const tmp = os.tmpdir();
    for (let dir = path.dirname(pgDir); dir.startsWith(`${tmp}/`); dir = path.dirname(dir)) {
      const { mode } = statSync(dir);
      if ((mode & 0o001) === 0) chmodSync(dir, (mode & 0o7777) | 0o011);
    }
    asUser = ['/usr/bin/setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups', '--'];
    try {
      await run(asUser[0], [...asUser.slice(1), 'test', '-w', pgDir]);
    } catch {
      throw new Error(
        `PostgreSQL runs as the postgres user, which cannot reach ${pgDir}: ` +
          'use a folder it can reach (for npm start, RUNBOAT_LOCAL_STATE_DIR=/var/tmp/runboat for example)',
      );
    }
  }
  const command = (name: string, args: string[]): [string, string[]] =>
    asUser.length
      ? [asUser[0], [...asUser.slice(1), path.join(pgBin, name), ...args]]
      : [path.join(pgBin, name), args];
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    try {
      await run(
        ...command('initdb', ['-D', dataDir, '-U', DB_USER, '--auth=trust', '-E', 'UTF8', '--no-sync']),
      );
    } catch (error) {
      throw new Error(
        `initdb failed in ${dataDir} (must be reachable by the postgres user): ${String(error)}`,
      );
    }
  }
  const port = await freePort();
  const logFile = path.join(workDir, 'postgresql.log');
  const daemon = startDaemon(
    'postgres',
    ...command('postgres', [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      // The Temporal server opens a pool per service and store (see writeServerConfig).
      '-c',
      'max_connections=200',
    ]),
    logFile,
  );
  await waitUntil(
    'PostgreSQL',
    async () => {
      await run(path.join(pgBin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]);
      return true;
    },
    { timeoutMs: 60_000, daemon, logFile },
  );
  return { daemon, port, dataDir };
}

/**
 * The Temporal server's configuration: development-postgres12.yaml's shape (all services in
 * one process, SQL persistence and SQL visibility on PostgreSQL), with free loopback ports,
 * a few history shards, and no metrics or pprof listeners.
 */
async function writeServerConfig(workDir: string, frontendPort: number, pgPort: number): Promise<string> {
  // Membership ports are stored in a smallint column: they must be below 32768, where the
  // kernel's free ports (the ephemeral range) are not.
  const ports = [];
  for (let i = 0; i < 8; i++) ports.push(i % 2 === 1 ? await freePortBelow32768() : await freePort());
  const [
    frontendHttp,
    frontendMembership,
    history,
    historyMembership,
    matching,
    matchingMembership,
    worker,
    workerMembership,
  ] = ports;
  const store = (databaseName: string, maxConns: number) => `
      sql:
        pluginName: postgres12
        databaseName: ${databaseName}
        connectAddr: 127.0.0.1:${pgPort}
        connectProtocol: tcp
        user: ${DB_USER}
        password: ${DB_PASSWORD}
        maxConns: ${maxConns}
        maxIdleConns: ${maxConns}
        maxConnLifetime: 1h`;
  const service = (grpcPort: number, membershipPort: number, extra = '') => `
    rpc:
      grpcPort: ${grpcPort}
      membershipPort: ${membershipPort}
      bindOnIP: 127.0.0.1${extra}`;
  const dynamicConfig = path.join(workDir, 'temporal-dynamicconfig.yaml');
  writeFileSync(dynamicConfig, '# Defaults of the Temporal server: nothing overridden.\n{}\n');
  const config = `# Generated by scripts/temporal-postgres.ts
log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: ${NUM_HISTORY_SHARDS}
  datastores:
    postgres-default:${store('temporal', 20)}
    postgres-visibility:${store('temporal_visibility', 10)}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  pprof:
    port: 0
services:
  frontend:${service(frontendPort, frontendMembership, `\n      httpPort: ${frontendHttp}`)}
  history:${service(history, historyMembership)}
  matching:${service(matching, matchingMembership)}
  worker:${service(worker, workerMembership)}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: 127.0.0.1:${frontendPort}
      httpAddress: 127.0.0.1:${frontendHttp}
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: ${dynamicConfig}
  pollInterval: 60s
`;
  const file = path.join(workDir, 'temporal-server.yaml');
  writeFileSync(file, config);
  return file;
}

/** Runs the shell script of one of docker-compose.yml's one-shot services, as compose would. */
async function composeScript(service: string, logFile: string, env: Record<string, string>): Promise<void> {
  const compose = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { command: string[] }>;
  };
  const script = compose.services[service].command[0].replaceAll('$$', '$');
  try {
    const { stdout, stderr } = await run('/bin/sh', ['-c', script], {
      env: { ...process.env, PATH: `${path.dirname(binary('temporal'))}:${process.env.PATH}`, ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
    writeFileSync(logFile, `--- ${service}\n${stdout}${stderr}`, { flag: 'a' });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    writeFileSync(logFile, `--- ${service} failed\n${stdout}${stderr}`, { flag: 'a' });
    throw new Error(`docker-compose.yml's ${service} script failed; see ${logFile}`);
  }
}

/** Waits until the frontend knows the custom search attributes (its namespace cache refreshes). */
async function searchAttributesServed(address: string, namespace: string, logFile: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection, namespace });
    await waitUntil(
      'the search attributes on the Temporal server',
      async () => {
        await client.workflow.count(`RunboatStatus = 'started' AND RunboatPr = 1`);
        return true;
      },
      { timeoutMs: 60_000, logFile },
    );
  } finally {
    await connection.close();
  }
}

async function freePortBelow32768(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}
