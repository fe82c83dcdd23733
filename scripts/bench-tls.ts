import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { withSilenceLimit } from '../common/kube-keep-alive';
import { startControlPlane } from './control-plane';
import { cpuSeconds } from './proc-cpu';

// `npm run bench:tls`: what a new connection to kube-apiserver costs the worker and the server
// (CPU from /proc), made as the Kubernetes client makes them (an agent per call: the TLS
// certificates parsed and a full handshake every time) and as common/kube-keep-alive.ts makes
// them (one agent: one TLS context, sessions resumed). Every watch is a new connection, and a
// burst opens more kept-alive ones (their agent resumed sessions already; it now shares the
// TLS context too). BENCH_CONNECTIONS (300) sequential connections per row,
// two rounds, against the test control plane (etcd and kube-apiserver).

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 300);

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-bench-tls-'));
  const plane = await startControlPlane(workDir);
  try {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(plane.kubeconfigPath);
    const apiServer = plane.daemons.find((daemon) => daemon.name === 'kube-apiserver')!.process.pid!;
    const version = new URL('/version', kubeConfig.getCurrentCluster()!.server);
    /** One GET on a connection of its own (no keep-alive), through the agent `config` gives. */
    const connectThrough = (config: KubeConfig) => async () => {
      const { agent, headers } = await config.applyToFetchOptions({});
      await new Promise<void>((resolve, reject) =>
        https
          .get(
            version,
            { agent: agent as https.Agent, headers: Object.fromEntries(headers as unknown as Headers) },
            (response) => {
              response.resume();
              response.on('end', resolve);
            },
          )
          .on('error', reject),
      );
    };
    const rows: Array<[string, () => Promise<void>]> = [
      ['an agent per connection (the client as it is; watches before)', connectThrough(kubeConfig)],
      [
        'one agent: TLS context shared, sessions resumed (watches now)',
        connectThrough(withSilenceLimit(kubeConfig, 60_000)),
      ],
    ];
    console.log(`\n${CONNECTIONS} connections per row, one at a time, ${os.cpus().length} cores\n`);
    console.log('| connection | round | this process, CPU ms | kube-apiserver, CPU ms | wall ms |');
    console.log('| --- | --- | --- | --- | --- |');
    for (let round = 1; round <= 2; round++) {
      for (const [what, connect] of rows) {
        const server0 = cpuSeconds(apiServer);
        const usage0 = process.cpuUsage();
        const started = Date.now();
        for (let i = 0; i < CONNECTIONS; i++) await connect();
        const usage = process.cpuUsage(usage0);
        const per = (ms: number) => (ms / CONNECTIONS).toFixed(2);
        console.log(
          `| ${what} | ${round} | ${per((usage.user + usage.system) / 1000)} | ` +
            `${per((cpuSeconds(apiServer) - server0) * 1000)} | ${per(Date.now() - started)} |`,
        );
      }
    }
  } finally {
    await plane.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
