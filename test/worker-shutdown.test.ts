import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { temporal as proto } from '@temporalio/proto';
import { expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import { buildWorkflowId } from '../workflows/definitions';
import {
  kubeConfig,
  kubeConfigThrough,
  SHA,
  spawnWorkerProcess,
  terminateWorkflowsAfterAll,
  testConfig,
  useTemporalClient,
  waitFor,
} from './helpers';
import { startTcpProxy } from './tcp-proxy';

// A worker told to stop (SIGTERM) cancels its running activities and waits for them. One stuck
// in a call that cannot be cancelled (here: a kube-apiserver that takes connections and never
// answers) would hold it draining for good, until Kubernetes' SIGKILL, saying nothing. It says
// what it still holds, gives up after PROCESS_SHUTDOWN_FORCE_TIME, and exits.

const config = testConfig();
const temporal = useTemporalClient(config);

terminateWorkflowsAfterAll(temporal, config);

it('exits on SIGTERM while an activity hangs on a kube-apiserver that never answers', async () => {
  const proxy = await startTcpProxy(new URL(kubeConfig().getCurrentCluster()!.server).host);
  proxy.stall();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'runboat-stalled-kube-'));
  writeFileSync(path.join(dir, 'kubeconfig'), kubeConfigThrough(proxy).exportConfig());
  const lines: string[] = [];
  const worker = spawnWorkerProcess(
    config,
    { KUBECONFIG: path.join(dir, 'kubeconfig'), LOG_LEVEL: 'info' },
    (line) => lines.push(line),
  );
  const exited = once(worker, 'exit');
  try {
    const build = await startBuild(temporal.client, config, {
      repo: 'oca/stalled',
      target_branch: '16.0',
      pr: null,
      git_commit: SHA('5'),
    });
    const handle = temporal.client.workflow.getHandle(buildWorkflowId(build.name));
    const { PENDING_ACTIVITY_STATE_STARTED } = proto.api.enums.v1.PendingActivityState;
    await waitFor(
      'the deploy activity running, its apply hanging',
      async () =>
        (await handle.describe()).raw.pendingActivities?.some(
          (activity) => activity.state === PENDING_ACTIVITY_STATE_STARTED,
        ),
      60_000,
    );
    worker.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    const said = (message: string) => lines.some((line) => line.includes(`"msg":"${message}"`));
    expect(said('worker still draining')).toBe(true);
    // It names what it still runs.
    const draining = lines.find((line) => line.includes('"msg":"worker still draining"'));
    expect((JSON.parse(draining!) as { activities: string[] }).activities).toEqual([
      `deployBuild of ${buildWorkflowId(build.name)}`,
    ]);
    expect(said('worker shutdown forced: activities left running')).toBe(true);
  } finally {
    worker.kill('SIGKILL');
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
