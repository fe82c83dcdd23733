import type { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Webhooks } from '@octokit/webhooks';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildJson } from '../api/views';
import { buildRef } from '../common/build';
import type { Config } from '../common/config';
import {
  startTemporalPostgres,
  temporalPostgresProvisioned,
  type TemporalPostgresServer,
} from '../scripts/temporal-postgres';
import { buildWorkflowId } from '../workflows/definitions';
import { payloads } from './api-server';
import { SHA, spawnApiProcess, spawnWorkerProcess, TestCluster, testConfig, waitFor } from './helpers';

// The production shape: a Temporal server built from go.temporal.io/server on PostgreSQL (SQL
// persistence and visibility), two worker processes and two API processes, all separate OS
// processes, in front of the test control plane (this file plays the Job and Deployment
// controllers). Signed webhooks go to either API; init slots hold across both workers; one
// worker is SIGKILLed mid-run and the Temporal server is restarted once; at the end every
// build is accounted for and eviction left exactly max_started started and max_deployed
// deployed.

const missing = temporalPostgresProvisioned();
if (missing)
  console.warn(
    `test/production-shape.test.ts skipped: ${missing}. Run \`scripts/provision.sh temporal-server\` (npm test does).`,
  );

const BUILDS = 8;
const MAX_INITIALIZING = 2;
const MAX_STARTED = 3;
const MAX_DEPLOYED = 6;
const INIT_JOB_RUNS_MS = 1_500;
const SECRET = 'production-shape-secret';
const REPOS = JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]);

describe.skipIf(missing !== undefined)('production shape: Temporal on PostgreSQL, 2 workers, 2 APIs', () => {
  let workDir: string;
  let temporal: TemporalPostgresServer;
  let config: Config;
  let cluster: TestCluster;
  let client: Client;
  let connection: Connection;
  const children: ChildProcess[] = [];
  let controller: NodeJS.Timeout | undefined;
  let peakRunningInits = 0;
  const initJobUids = new Map<string, Set<string>>();
  const initsFinished = new Set<string>();

  const serviceEnv = (): Record<string, string> => ({
    RUNBOAT_REPOS: REPOS,
    RUNBOAT_MAX_INITIALIZING: String(MAX_INITIALIZING),
    RUNBOAT_MAX_STARTED: String(MAX_STARTED),
    RUNBOAT_MAX_DEPLOYED: String(MAX_DEPLOYED),
    RUNBOAT_EVICTION_INTERVAL: '2',
    RUNBOAT_GITHUB_WEBHOOK_SECRET: SECRET,
    RUNBOAT_API_ADMIN_USER: 'admin',
    RUNBOAT_API_ADMIN_PASSWD: 'admin',
  });
  const spawnWorker = (name: string) => {
    const worker = spawnWorkerProcess(config, serviceEnv());
    worker.on('exit', (code, signal) => console.log(`${name} exited (${code ?? signal})`));
    children.push(worker);
    return worker;
  };
  /** An API process (`api/main.ts`) on its own port, configured like the workers. */
  const spawnApi = async (name: string) => {
    const log = createWriteStream(path.join(workDir, `${name}.log`), { flags: 'a' });
    const api = await spawnApiProcess(config, serviceEnv(), (line) => log.write(`${line}\n`));
    children.push(api.child);
    return api.url;
  };

  /**
   * Plays the Job controller: an init or cleanup Job succeeds INIT_JOB_RUNS_MS after it was
   * created. Samples how many init Jobs run at once, and remembers every init Job's uid.
   */
  const playJobController = () => {
    let busy = false;
    const tick = async () => {
      const { items } = await cluster.batch.listNamespacedJob({ namespace: config.buildNamespace });
      let running = 0;
      for (const job of items) {
        const labels = job.metadata?.labels ?? {};
        const build = labels['runboat/build'];
        const done = job.status?.conditions?.some((c) => ['Complete', 'Failed'].includes(c.type));
        if (labels['runboat/job-kind'] === 'initialize') {
          if (!initJobUids.has(build)) initJobUids.set(build, new Set());
          initJobUids.get(build)?.add(job.metadata?.uid as string);
          if (!done) running++;
        }
        const age = Date.now() - (job.metadata?.creationTimestamp?.getTime() ?? Date.now());
        if (!done && age >= INIT_JOB_RUNS_MS) {
          await cluster.finishJob(build, labels['runboat/job-kind'], true);
          if (labels['runboat/job-kind'] === 'initialize') initsFinished.add(build);
        }
      }
      peakRunningInits = Math.max(peakRunningInits, running);
    };
    controller = setInterval(() => {
      if (busy) return;
      busy = true;
      void tick()
        .catch(() => undefined)
        .finally(() => (busy = false));
    }, 100);
  };

  beforeAll(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-production-'));
    const started = Date.now();
    temporal = await startTemporalPostgres(path.join(workDir, 'temporal'));
    console.log(`Temporal server on PostgreSQL up in ${Date.now() - started} ms (logs in ${workDir})`);
    config = testConfig({ TEMPORAL_ADDRESS: temporal.address, ...serviceEnv() });
    cluster = new TestCluster(config.buildNamespace);
    await cluster.createNamespace();
    cluster.playDeploymentController();
    playJobController();
    connection = await Connection.connect({ address: temporal.address });
    client = new Client({ connection, namespace: config.temporalNamespace });
  });

  afterAll(async () => {
    clearInterval(controller);
    cluster?.stopControllers();
    for (const child of children) child.kill('SIGKILL');
    await connection?.close();
    await temporal?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('runs every build to its end through a worker crash and a Temporal restart', async () => {
    const workers = [spawnWorker('worker 1'), spawnWorker('worker 2')];
    const apis = [await spawnApi('api-1'), await spawnApi('api-2')];
    const webhooks = new Webhooks({ secret: SECRET });
    const commits = Array.from({ length: BUILDS }, (_, i) => ({
      repo: 'oca/server-tools',
      target_branch: '17.0',
      pr: 100 + i,
      git_commit: SHA(i.toString(16)),
    }));
    const names = commits.map((c) => buildRef(c).name);

    // Signed webhooks, alternately to either API.
    for (const [i, c] of commits.entries()) {
      const body = JSON.stringify(
        payloads.pullRequest('opened', c.repo, c.pr, c.target_branch, c.git_commit),
      );
      const response = await fetch(`${apis[i % 2]}/webhooks/github`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'pull_request',
          'x-github-delivery': crypto.randomUUID(),
          'x-hub-signature-256': await webhooks.sign(body),
        },
        body,
      });
      expect(response.status).toBe(200);
      expect(((await response.json()) as { builds: string[] }).builds).toEqual([names[i]]);
    }

    const listed = async (api: string) =>
      ((await (await fetch(`${api}/api/v1/builds?repo=oca/server-tools`)).json()) as BuildJson[]).filter(
        (b) => names.includes(b.name),
      );
    // One worker is SIGKILLed while builds are still queued for their init.
    await waitFor('two builds initialized', async () => initsFinished.size >= 2, 120_000);
    workers[0].kill('SIGKILL');
    await new Promise((resolve) =>
      workers[0].exitCode !== null ? resolve(null) : workers[0].once('exit', resolve),
    );

    // The Temporal server restarts once, later in the run.
    await waitFor('four builds initialized', async () => initsFinished.size >= 4, 180_000);
    const restarting = Date.now();
    await temporal.restartTemporal();
    console.log(
      `Temporal server restarted in ${Date.now() - restarting} ms, ${initsFinished.size} inits done`,
    );

    // Every build initialized once, by the surviving worker; eviction then leaves exactly
    // max_started started and max_deployed deployed (PR builds have no newest-build guard).
    await waitFor(
      'eviction to settle at the limits',
      async () => {
        const builds = await listed(apis[0]);
        const started = builds.filter((b) => b.status === 'started').length;
        const stopped = builds.filter((b) => b.status === 'stopped').length;
        return (
          builds.length === MAX_DEPLOYED && started === MAX_STARTED && stopped === MAX_DEPLOYED - MAX_STARTED
        );
      },
      240_000,
    );

    // Nothing lost, nothing doubled: one workflow per webhook, each init Job created once.
    const workflows: string[] = [];
    for await (const execution of client.workflow.list({
      query: `TaskQueue = '${config.taskQueue}' AND WorkflowType = 'buildWorkflow'`,
    }))
      workflows.push(execution.workflowId);
    expect([...new Set(workflows)].sort()).toEqual(names.map(buildWorkflowId).sort());
    for (const name of names) expect(initJobUids.get(name)?.size, `init jobs of ${name}`).toBe(1);

    // The two undeployed builds left nothing behind; the others are what the APIs say.
    const deployed = new Set((await listed(apis[0])).map((b) => b.name));
    for (const name of names.filter((n) => !deployed.has(n))) {
      const description = await client.workflow.getHandle(buildWorkflowId(name)).describe();
      expect(description.status.name).toBe('COMPLETED');
      expect(await cluster.builds.listBuildObjects(name)).toEqual([]);
    }
    const replicas = await Promise.all(
      [...deployed].map(async (n) => (await cluster.deployment(n))?.spec?.replicas),
    );
    expect(replicas.filter((r) => r === 1)).toHaveLength(MAX_STARTED);

    // Both APIs give the same answers.
    const view = (builds: BuildJson[]) => builds.map((b) => `${b.name}:${b.status}`).sort();
    expect(view(await listed(apis[1]))).toEqual(view(await listed(apis[0])));
    for (const api of apis) {
      const status = (await (await fetch(`${api}/api/v1/status`)).json()) as Record<string, number>;
      expect(status).toMatchObject({ started: MAX_STARTED, deployed: MAX_DEPLOYED });
    }

    // Init slots hold across both workers: never more init Jobs at once than max_initializing.
    console.log(
      `peak of init Jobs running at once: ${peakRunningInits} (max_initializing ${MAX_INITIALIZING})`,
    );
    expect(peakRunningInits).toBeLessThanOrEqual(MAX_INITIALIZING);
    expect(peakRunningInits).toBe(MAX_INITIALIZING);
    expect(workers[1].exitCode).toBeNull();
  }, 600_000);
});
