import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { BuildJson } from '../api/views';
import { binary } from '../scripts/paths';
import { freePort } from '../scripts/processes';
import { waitFor } from './helpers';

// The README's run command end to end: its own Temporal dev server and simulated cluster
// (controller-manager, scheduler, kwok nodes), the demo webhooks, builds started by real
// Deployment and Job controllers, one stopped and one undeployed, then a clean Ctrl-C.

const root = path.resolve(__dirname, '..');
const stateDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-local-'));
let service: ChildProcess | undefined;

afterAll(() => {
  service?.kill('SIGKILL');
  rmSync(stateDir, { recursive: true, force: true });
});

const daemonsLeft = () => {
  try {
    return execFileSync('pgrep', ['-f', stateDir], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
};

it('runs the whole service locally and stops it cleanly', async () => {
  const [port, temporalPort, uiPort] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    LOG_LEVEL: 'warn',
    RUNBOAT_LOCAL_STATE_DIR: stateDir,
  };
  for (const name of ['TEMPORAL_ADDRESS', 'KUBECONFIG']) delete env[name];
  env.RUNBOAT_LOCAL_TEMPORAL_PORT = String(temporalPort);
  env.RUNBOAT_LOCAL_TEMPORAL_UI_PORT = String(uiPort);
  service = spawn(process.execPath, ['--import', 'tsx', 'scripts/local-run.ts'], {
    cwd: root,
    env,
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor('the API', async () => (await fetch(`${url}/readyz`)).ok, 120_000);

  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', url], { cwd: root, env });
  const builds = async () => (await (await fetch(`${url}/api/v1/builds`)).json()) as BuildJson[];
  const settled = await waitFor(
    'two builds started and one failed, by the simulated cluster',
    async () => {
      const list = await builds();
      const statuses = list.map((b) => b.status).sort();
      return JSON.stringify(statuses) === JSON.stringify(['failed', 'started', 'started']) ? list : undefined;
    },
    90_000,
  );
  const [branch, pr] = settled.filter((b) => b.status === 'started');
  const failed = settled.find((b) => b.status === 'failed') as BuildJson;

  // The failed init's log, served by kwok's kubelet API, was kept: it outlives the job's pod.
  const initLog = async () => (await fetch(`${url}/api/v1/builds/${failed.name}/init-log`)).text();
  expect(await initLog()).toContain('simulated by kwok');
  const kubectl = (...args: string[]) =>
    execFileSync(binary('kubectl'), [
      '--kubeconfig',
      path.join(stateDir, 'kubernetes', 'kubeconfig'),
      ...args,
    ]);
  kubectl(
    '-n',
    'runboat-builds',
    'delete',
    'jobs,pods',
    '-l',
    `runboat/build=${failed.name},runboat/job-kind=initialize`,
  );
  expect(await initLog()).toContain('simulated by kwok');

  expect((await fetch(`${url}/api/v1/builds/${branch.name}/stop`, { method: 'POST' })).status).toBe(200);
  await waitFor(
    'stopped by the controller',
    async () => (await builds()).find((b) => b.name === branch.name)?.status === 'stopped',
    30_000,
  );

  const admin = `Basic ${Buffer.from('admin:admin').toString('base64')}`;
  const undeploy = await fetch(`${url}/api/v1/builds/${pr.name}`, {
    method: 'DELETE',
    headers: { authorization: admin },
  });
  expect(undeploy.status).toBe(200);
  // The cleanup Job runs on a kwok node and succeeds; then every object goes.
  await waitFor('undeployed', async () => !(await builds()).some((b) => b.name === pr.name), 60_000);

  service.kill('SIGINT');
  await new Promise((resolve) => service?.once('exit', resolve));
  await waitFor('no daemon left', async () => daemonsLeft() === '', 15_000);
}, 300_000);
