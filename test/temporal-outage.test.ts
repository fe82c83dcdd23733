import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import type { Config } from '../common/config';
import { freePort } from '../scripts/processes';
import { startTemporalDevServer, type TemporalDevServer } from '../scripts/temporal-dev';
import { SHA, spawnServiceProcess, spawnWorkerProcess, TestCluster, testConfig, waitFor } from './helpers';

// The worker and API processes started before Temporal: each waits, retrying with backoff and
// saying so, and serves once a Temporal server comes up on its address. A fatal error (a
// namespace that does not exist) still ends the worker at once, with a clear message. The worker's
// probes say all along whether it polls.

const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-outage-'));
const children: ChildProcess[] = [];
let temporal: TemporalDevServer | undefined;
let config: Config;
let cluster: TestCluster;

interface LogLine {
  level: number;
  msg: string;
  attempt?: number;
  nextDelayMs?: number;
}
const logsOf = (lines: string[]): LogLine[] =>
  lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as LogLine];
    } catch {
      return []; // the SDK's own (Rust) log lines
    }
  });
/** The failed attempts a process logged: once each, at warn, with the delay before the next. */
const retries = (lines: string[]) =>
  logsOf(lines).filter((l) => l.level === 40 && l.msg.startsWith('connecting to Temporal failed'));

function spawn(main: string, env: Record<string, string> = {}) {
  const lines: string[] = [];
  const child =
    main === 'worker'
      ? spawnWorkerProcess(config, env, (line) => lines.push(line))
      : spawnServiceProcess(main, config, env, (line) => lines.push(line));
  children.push(child);
  return { child, lines };
}

beforeAll(async () => {
  // A loopback port where no Temporal runs yet.
  config = testConfig({ TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });
  cluster = new TestCluster(config.buildNamespace);
  await cluster.createNamespace();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await temporal?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

it('a worker and an API started before Temporal wait for it, then serve builds', async () => {
  const apiPort = await freePort();
  const url = `http://127.0.0.1:${apiPort}`;
  const probesAddress = `127.0.0.1:${await freePort()}`;
  const workerProbes = `http://${probesAddress}`;
  const worker = spawn('worker', { RUNBOAT_WORKER_HEALTH_ADDRESS: probesAddress });
  const api = spawn(path.join('api', 'main.ts'), { PORT: String(apiPort) });

  // Both wait, backing off: 1 s after the first failed attempt, 2 s after the second.
  await waitFor('the worker to retry twice', async () => retries(worker.lines).length >= 2, 60_000);
  await waitFor('the API to retry twice', async () => retries(api.lines).length >= 2, 60_000);
  for (const lines of [worker.lines, api.lines]) {
    expect(retries(lines).slice(0, 2)).toMatchObject([
      { attempt: 1, nextDelayMs: 1_000 },
      { attempt: 2, nextDelayMs: 2_000 },
    ]);
  }
  expect(worker.child.exitCode).toBeNull();
  expect(api.child.exitCode).toBeNull();
  expect((await fetch(`${url}/readyz`)).status).toBe(503);
  // The worker answers its probes while it waits, and is not ready: it polls nothing.
  expect((await fetch(`${workerProbes}/healthz`)).status).toBe(200);
  expect((await fetch(`${workerProbes}/readyz`)).status).toBe(503);

  temporal = await startTemporalDevServer(path.join(workDir, 'temporal'), {
    port: Number(config.temporalAddress.split(':')[1]),
  });

  await waitFor('the API ready', async () => (await fetch(`${url}/readyz`)).status === 200, 60_000);
  await waitFor(
    'the worker ready',
    async () => (await fetch(`${workerProbes}/readyz`)).status === 200,
    60_000,
  );
  const connection = await Connection.connect({ address: config.temporalAddress });
  try {
    const client = new Client({ connection, namespace: config.temporalNamespace });
    const build = await startBuild(client, config, {
      repo: 'oca/outage',
      target_branch: '16.0',
      pr: null,
      git_commit: SHA('1'),
    });
    // Only the worker process polls this task queue: the Deployment is its doing.
    await waitFor('the build Deployment, from the worker', () => cluster.deployment(build.name), 90_000);
    await waitFor(
      'the build listed by the API',
      async () => {
        const response = await fetch(`${url}/api/v1/builds/${build.name}`);
        return response.status === 200;
      },
      30_000,
    );
  } finally {
    await connection.close();
  }
  expect(worker.child.exitCode).toBeNull();
}, 180_000);

it('still exits at once, saying why, on an error retrying cannot fix', async () => {
  expect(temporal, 'the previous test started Temporal').toBeDefined();
  const worker = spawn('worker', { TEMPORAL_NAMESPACE: 'no-such-namespace' });
  const code = await new Promise<number | null>((resolve) => worker.child.once('exit', resolve));
  expect(code).toBe(1);
  const fatal = logsOf(worker.lines).find((l) => l.level === 60);
  expect(fatal?.msg).toBe('worker failed');
  expect(worker.lines.join('\n')).toMatch(/no-such-namespace/);
  expect(retries(worker.lines)).toEqual([]);
}, 120_000);
