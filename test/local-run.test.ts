import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
// Before that, the first run is SIGKILLed, leaving its daemons behind, and a second run
// comes up on the same state folder all the same.

const root = path.resolve(__dirname, '..');
const stateDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-local-'));
let service: ChildProcess | undefined;

afterAll(() => {
  service?.kill('SIGKILL');
  // A failed test leaves no daemon behind either: end what the pid file still records.
  try {
    const recorded = JSON.parse(readFileSync(path.join(stateDir, 'children.json'), 'utf8')) as Array<{
      pid: number;
    }>;
    for (const { pid } of recorded) if (running(pid)) process.kill(pid, 'SIGKILL');
  } catch {
    // No pid file: the run stopped cleanly.
  }
  rmSync(stateDir, { recursive: true, force: true });
});

/** A process that is still running (not gone, not a zombie waiting to be reaped). */
const running = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== '';
  } catch {
    return false;
  }
};

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
  const start = () =>
    spawn(process.execPath, ['--import', 'tsx', 'scripts/local-run.ts'], { cwd: root, env, stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  const ready = () => waitFor('the API', async () => (await fetch(`${url}/readyz`)).ok, 120_000);

  // Killed outright, the first run leaves its daemons running: they hold the Temporal ports
  // and etcd's data folder. The second run ends them and starts its own.
  service = start();
  await ready();
  const children = JSON.parse(readFileSync(path.join(stateDir, 'children.json'), 'utf8')) as Array<{
    pid: number;
    name: string;
  }>;
  expect(children.map((c) => c.name).sort()).toEqual(
    [
      'etcd',
      'kube-apiserver',
      'kube-controller-manager',
      'kube-scheduler',
      'kwok',
      'local-run',
      'temporal',
    ].sort(),
  );
  const first = service;
  first.kill('SIGKILL');
  await new Promise((resolve) => first.once('exit', resolve));
  expect(children.filter((c) => c.name !== 'local-run' && running(c.pid))).toHaveLength(6);
  service = start();
  await ready();
  expect(children.filter((c) => running(c.pid)).map((c) => c.name)).toEqual([]);

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

  // Ctrl-C, and again while it stops (its API is the first thing it closes): the daemons still
  // all end before it does.
  const exited = new Promise((resolve) => service?.once('exit', resolve));
  service.kill('SIGINT');
  await waitFor(
    'the API closed',
    async () =>
      !(await fetch(`${url}/readyz`).then(
        () => true,
        () => false,
      )),
  );
  service.kill('SIGINT');
  service.kill('SIGTERM');
  await exited;
  await waitFor('no daemon left', async () => daemonsLeft() === '', 15_000);
}, 420_000);
