import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startBuild } from '../api/build-client';
import { loadConfig } from '../common/config';
import { forEachAtOnce } from './at-once';
import { percentile } from './percentile';
import { calibrationCpuMs, cpuSeconds } from './proc-cpu';
import { startTemporalDevServer } from './temporal-dev';
import { startTemporalPostgres } from './temporal-postgres';

// `npm run bench:starts`: what Temporal alone takes to start the burst's builds,
// with no worker, no API process and no cluster: BENCH_BUILDS (100) `startBuild` calls, the API's
// own, one at a time and then BENCH_BURST_CONCURRENCY (20) at a time as `npm run bench` sends its
// webhooks, over BENCH_STARTS_ROUNDS (5) rounds. No worker polls the task queue, so the builds
// never run; what is measured is the start each webhook waits for, the floor under the burst's
// webhook response times (issue 10's target 2). BENCH_TEMPORAL=postgres: the Temporal server on
// PostgreSQL instead of the dev server (`npm run bench`'s option too), its CPU and PostgreSQL's.

const BUILDS = Number(process.env.BENCH_BUILDS ?? 100);
const CONCURRENCY = Number(process.env.BENCH_BURST_CONCURRENCY ?? 20);
const ROUNDS = Number(process.env.BENCH_STARTS_ROUNDS ?? 5);
const ON_POSTGRES = process.env.BENCH_TEMPORAL === 'postgres';

interface Round {
  ms: number[];
  wallMs: number;
  serverCpuMs: number;
}

async function main(): Promise<void> {
  const machine = `${os.cpus().length} cores (calibration ${calibrationCpuMs()} ms of CPU)`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-starts-'));
  const server = ON_POSTGRES ? await startTemporalPostgres(dir) : await startTemporalDevServer(dir);
  const pids = 'pids' in server ? Object.values(server.pids()) : [server.pid];
  const serverCpuSeconds = () => pids.reduce((total, pid) => total + cpuSeconds(pid), 0);
  const stackName = ON_POSTGRES ? 'the Temporal server on PostgreSQL' : 'the Temporal dev server';
  const connection = await Connection.connect({ address: server.address });
  try {
    const client = new Client({ connection });
    const config = loadConfig({
      RUNBOAT_BUILD_NAMESPACE: 'bench',
      RUNBOAT_BUILD_DOMAIN: 'bench.test',
      RUNBOAT_TASK_QUEUE: 'bench-starts',
      RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
      TEMPORAL_ADDRESS: server.address,
    });
    let pr = 0;
    const round = async (concurrency: number): Promise<Round> => {
      const ms: number[] = [];
      const cpuBefore = serverCpuSeconds();
      const began = performance.now();
      await forEachAtOnce(BUILDS, concurrency, async () => {
        pr++;
        const commit = {
          repo: `oca/repo-${pr % 50}`,
          target_branch: '16.0',
          pr,
          git_commit: pr.toString(16).padStart(40, '0'),
        };
        const sent = performance.now();
        await startBuild(client, config, commit);
        ms.push(performance.now() - sent);
      });
      const wallMs = performance.now() - began;
      return {
        ms,
        wallMs,
        serverCpuMs: (serverCpuSeconds() - cpuBefore) * 1000,
      };
    };
    // The first starts of a fresh server (its caches, the client's channel) are not the burst's.
    await round(CONCURRENCY);
    console.log(
      `\nstarts on ${stackName} alone (no worker polls), ${BUILDS} builds a round, ` +
        `${ROUNDS} rounds per line, ${machine}\n`,
    );
    console.log(
      '| at once | start p50 / p95 / p99, all rounds | p99 of each round | starts per second | Temporal CPU per start |',
    );
    console.log('| --- | --- | --- | --- | --- |');
    for (const concurrency of [1, CONCURRENCY]) {
      const rounds: Round[] = [];
      for (let i = 0; i < ROUNDS; i++) rounds.push(await round(concurrency));
      const all = rounds.flatMap((r) => r.ms);
      const wall = rounds.reduce((total, r) => total + r.wallMs, 0);
      const cpu = rounds.reduce((total, r) => total + r.serverCpuMs, 0);
      const fixed = (value: number) => value.toFixed(0);
      console.log(
        `| ${concurrency} | ${[50, 95, 99].map((p) => fixed(percentile(all, p))).join(' / ')} ms | ` +
          `${rounds.map((r) => fixed(percentile(r.ms, 99))).join(', ')} ms | ` +
          `${fixed((all.length / wall) * 1000)} | ${(cpu / all.length).toFixed(1)} ms |`,
      );
    }
  } finally {
    await connection.close();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
