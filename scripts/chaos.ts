import type { ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import {
  chaosCommit,
  InitJobObserver,
  LIFE_STAGES,
  orphanObjects,
  ServiceDriver,
  workflowRunning,
  type Life,
} from './chaos-checks';
import { buildStateQuery, buildWorkflowId } from '../workflows/definitions';
import { binary } from './paths';
import { webhookVerifier } from '../api/webhooks';
import { newGitHubAppKey } from './github-app-key';
import { shownOnGitHub, startGitHubEmulator } from './github-emulator';
import { WebhookSide } from './github-webhook-side';
import { freePort, spawnService, waitUntil } from './processes';
import { startSimulatedCluster } from './simulated-cluster';
import { startTemporalDevServer, type TemporalDevServer } from './temporal-dev';

// `npm run chaos` (issue 14): CHAOS_BUILDS builds through full lives (signed webhook, started,
// stop, start, undeploy, all through the API) on `npm start`'s simulated cluster, while the
// worker process is SIGKILLed CHAOS_KILL_SECONDS after each start (from when it polls, so that
// a loaded machine's slow starts still leave it time to work) and started again, the Temporal dev
// server (its database on a file) is restarted once and kube-apiserver twice, and the API is
// down for CHAOS_API_DOWN_SECONDS once. Webhooks come as GitHub sends them: once, a failed
// delivery left for the service to ask again (RUNBOAT_REDELIVER_WEBHOOKS). Then, once the
// chaos has stopped and at most CHAOS_SETTLE_SECONDS later, it prints what must be zero:
// stuck builds, orphan objects, builds that ever had two init Jobs, builds left in a status
// that is not steady; builds whose last status on GitHub (a loopback GitHub with its rate
// limit, which the service is let to exceed) is not the one of their life's end; and the peak of
// init Jobs at once against max_initializing. Exits 1 when one fails. Everything listens on
// loopback. CHAOS_GITHUB_APP=true: the service acts as a GitHub App and reports check runs.

const BUILDS = Number(process.env.CHAOS_BUILDS ?? 100);
const MAX_INITIALIZING = Number(process.env.CHAOS_MAX_INITIALIZING ?? 5);
const KILL_SECONDS = Number(process.env.CHAOS_KILL_SECONDS ?? 20);
/**
 * Between two webhooks. A burst of 100 at once never progressed on 2 loaded cores: the worker
 * takes every deploy at once and finishes none of them within the 20 s it lives.
 */
const ARRIVAL_MS = Number(process.env.CHAOS_ARRIVAL_MS ?? 2_000);
/** The chaos stops after this long even if lives are still running; then they must settle. */
const CHAOS_MINUTES = Number(process.env.CHAOS_MINUTES ?? 30);
const SETTLE_SECONDS = Number(process.env.CHAOS_SETTLE_SECONDS ?? 300);
const NAMESPACE = 'chaos';
const WEBHOOK_SECRET = 'chaos-secret';
const ADMIN = { user: 'admin', password: 'chaos' };
/** Fractions of the lives' steps done at which the servers restart: in flight, not at the end. */
const APISERVER_RESTARTS = [0.2, 0.65];
const TEMPORAL_RESTART = 0.4;
/** The API SIGKILLed and kept down this long: the webhooks of that while fail. */
const API_DOWN = { at: 0.3, seconds: Number(process.env.CHAOS_API_DOWN_SECONDS ?? 15) };
/** The service acting as a GitHub App, reporting builds as check runs, rather than with a token. */
const AS_GITHUB_APP = process.env.CHAOS_GITHUB_APP === 'true';
const HOOK = AS_GITHUB_APP ? 'app/hook' : 'orgs/oca/hooks/1';
/** How long GitHub's statuses may take to arrive after the lives settled (its rate limit). */
const GITHUB_SETTLE_SECONDS = Number(process.env.CHAOS_GITHUB_SETTLE_SECONDS ?? 600);

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'runboat-chaos-'));
  console.log(
    `chaos: ${BUILDS} builds, max_initializing ${MAX_INITIALIZING}, worker SIGKILL every ${KILL_SECONDS} s; logs in ${workDir}`,
  );
  const temporalDir = path.join(workDir, 'temporal');
  const temporalOptions = {
    port: await freePort(),
    uiPort: await freePort(),
    // On a file: a restarted server has every workflow back.
    dbFile: path.join(temporalDir, 'temporal.db'),
  };
  let temporal: TemporalDevServer;
  const [firstTemporal, cluster] = await Promise.all([
    startTemporalDevServer(temporalDir, temporalOptions),
    startSimulatedCluster(path.join(workDir, 'kube'), { nodes: 3 }),
  ]);
  temporal = firstTemporal;
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } });

  const apiPort = await freePort();
  const github = await startGitHubEmulator();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    RUNBOAT_BUILD_NAMESPACE: NAMESPACE,
    RUNBOAT_BUILD_DOMAIN: 'chaos.test',
    RUNBOAT_TASK_QUEUE: 'chaos',
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
    RUNBOAT_MAX_INITIALIZING: String(MAX_INITIALIZING),
    // No eviction, no idle stop: every stop and undeploy is the driver's.
    RUNBOAT_MAX_STARTED: String(BUILDS + 10),
    RUNBOAT_MAX_DEPLOYED: String(BUILDS + 10),
    RUNBOAT_EVICTION_INTERVAL: '86400',
    // Statuses and deployments, faster than GitHub allows: its refusals are part of the chaos.
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
    RUNBOAT_GITHUB_DEPLOYMENTS: 'true',
    RUNBOAT_GITHUB_API_URL: github.url,
    ...(AS_GITHUB_APP
      ? {
          RUNBOAT_GITHUB_APP_ID: '1',
          RUNBOAT_GITHUB_APP_PRIVATE_KEY: newGitHubAppKey(),
          RUNBOAT_GITHUB_CHECK_RUNS: 'true',
        }
      : { RUNBOAT_GITHUB_TOKEN: 'chaos' }),
    RUNBOAT_GITHUB_WRITES_PER_MINUTE: '600',
    RUNBOAT_GITHUB_WEBHOOK_SECRET: WEBHOOK_SECRET,
    RUNBOAT_REDELIVER_WEBHOOKS: HOOK,
    RUNBOAT_API_ADMIN_USER: ADMIN.user,
    RUNBOAT_API_ADMIN_PASSWD: ADMIN.password,
    TEMPORAL_ADDRESS: `127.0.0.1:${temporalOptions.port}`,
    KUBECONFIG: cluster.kubeconfigPath,
    PORT: String(apiPort),
    LOG_LEVEL: 'warn',
  };

  // The worker and the API, each started again whenever it exits: by our SIGKILL, or on its own
  // (counted, since a process that gives up during an outage is a finding too).
  const exitsOnTheirOwn = { worker: 0, api: 0 };
  let ending = false;
  const processes: Record<'worker' | 'api', ChildProcess | undefined> = { worker: undefined, api: undefined };
  const killing = new Set<ChildProcess>();
  /** The API is not started again before this time (ms). */
  let apiBackAt = 0;
  /** When the current worker started polling; undefined while it is starting. */
  let workerUpSince: number | undefined;
  const keep = (name: 'worker' | 'api', main: string) => {
    // The worker logs at info, for its 'worker started' line: the kill timer runs from there.
    const worker = name === 'worker';
    const child = spawnService(
      main,
      { ...env, LOG_LEVEL: worker ? 'info' : 'warn' },
      {
        logFile: path.join(workDir, `${name}.log`),
        onLine: (line) => {
          if (worker && line.includes('"msg":"worker started"')) workerUpSince = Date.now();
        },
      },
    );
    processes[name] = child;
    if (worker) workerUpSince = undefined;
    child.once('exit', () => {
      if (!killing.delete(child)) exitsOnTheirOwn[name]++;
      const down = name === 'api' ? Math.max(apiBackAt - Date.now(), 0) : 0;
      setTimeout(() => ending || keep(name, main), down);
    });
  };
  keep('worker', 'worker/main.ts');
  keep('api', 'api/main.ts');
  // Ctrl-C leaves no daemon behind.
  process.once('SIGINT', () => {
    ending = true;
    for (const child of Object.values(processes)) child?.kill('SIGKILL');
    void Promise.all([temporal.stop(), cluster.stop()]).finally(() => process.exit(130));
  });
  const kill = async (name: 'worker' | 'api') => {
    const child = processes[name];
    if (!child || child.exitCode !== null) return;
    killing.add(child);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };

  // Lives start once the API answers: a refused connection in the table is then a finding.
  await waitUntil(
    'the API ready',
    () =>
      fetch(`http://127.0.0.1:${apiPort}/readyz`).then(
        (response) => response.ok,
        () => false,
      ),
    { timeoutMs: 120_000, logFile: path.join(workDir, 'api.log') },
  );
  const observer = new InitJobObserver(kc, NAMESPACE);
  await observer.start();
  // GitHub's side of the webhook: each event delivered once (10 s to answer, as GitHub allows).
  const verifier = await webhookVerifier(WEBHOOK_SECRET);
  const hook = new WebhookSide(HOOK, async (event, body, guid) => {
    const response = await fetch(`http://127.0.0.1:${apiPort}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': event,
        'x-github-delivery': guid,
        'x-hub-signature-256': await verifier.sign(body),
      },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await response.arrayBuffer();
    return response.status;
  });
  github.serve(hook);
  const driver = new ServiceDriver(`http://127.0.0.1:${apiPort}`, {
    webhookSecret: WEBHOOK_SECRET,
    admin: ADMIN,
    pollMs: 1_000,
    deliverWebhook: (event, body) => hook.deliver(event, body),
  });
  driver.start();

  const started = Date.now();
  const elapsed = () => `${Math.round((Date.now() - started) / 1000)} s`;
  const lives: Life[] = Array.from({ length: BUILDS }, (_, index) => ({ index, stage: 'webhook' }));
  const abortLives = new AbortController();
  // Every waiting life listens on it.
  setMaxListeners(BUILDS + 10, abortLives.signal);
  const failures: string[] = [];
  const allLives = Promise.all(
    lives.map((life) =>
      sleep(life.index * ARRIVAL_MS, undefined, { signal: abortLives.signal })
        .then(() => driver.life(life, chaosCommit(life.index), abortLives.signal))
        .catch((error: unknown) => {
          if (!abortLives.signal.aborted) failures.push(`build ${life.name ?? life.index}: ${String(error)}`);
        }),
    ),
  );
  let livesDone = false;
  void allLives.then(() => (livesDone = true));
  const progress = () =>
    lives.reduce((sum, life) => sum + LIFE_STAGES.indexOf(life.stage), 0) /
    (lives.length * (LIFE_STAGES.length - 1));

  // The chaos: kills on a timer, server restarts at fixed points of the run's progress.
  const events: string[] = [];
  const event = (what: string) => {
    events.push(`${elapsed()}: ${what}`);
    console.log(`  ${elapsed()} ${what} (progress ${Math.round(progress() * 100)}%)`);
  };
  const restarts = [
    ...APISERVER_RESTARTS.map((at) => ({ at, what: 'kube-apiserver' as const })),
    { at: TEMPORAL_RESTART, what: 'temporal' as const },
    { at: API_DOWN.at, what: 'api' as const },
  ].sort((a, b) => a.at - b.at);
  const chaosDeadline = started + CHAOS_MINUTES * 60_000;
  let kills = 0;
  let lastReport = Date.now();
  const restartMs: Record<string, number[]> = { 'kube-apiserver': [], temporal: [], api: [] };
  while (!livesDone && Date.now() < chaosDeadline) {
    if (workerUpSince !== undefined && Date.now() - workerUpSince >= KILL_SECONDS * 1000) {
      await kill('worker');
      kills++;
      event(`worker SIGKILLed (#${kills})`);
    }
    if (restarts.length && progress() >= restarts[0].at) {
      const { what } = restarts.shift()!;
      const t = Date.now();
      if (what === 'api') {
        apiBackAt = Date.now() + API_DOWN.seconds * 1000;
        await kill('api');
      } else if (what === 'temporal') {
        await temporal.stop();
        temporal = await startTemporalDevServer(temporalDir, temporalOptions);
      } else {
        await cluster.restartApiServer();
      }
      restartMs[what].push(Date.now() - t);
      event(
        what === 'api'
          ? `API SIGKILLed, down ${API_DOWN.seconds} s`
          : `${what} restarted in ${Date.now() - t} ms`,
      );
    }
    if (Date.now() - lastReport >= 60_000) {
      lastReport = Date.now();
      console.log(
        `  ${elapsed()} progress ${Math.round(progress() * 100)}%, peak init Jobs ${observer.peak}`,
      );
    }
    await sleep(250);
  }
  const chaosEnded = Date.now();
  event(livesDone ? 'all lives done: chaos stops' : `chaos stops after ${CHAOS_MINUTES} min`);
  const missedRestarts = restarts.map((r) => r.what);

  // Bounded settling: lives still running by then are stuck.
  await Promise.race([allLives, sleep(SETTLE_SECONDS * 1000)]);
  const settledMs = Date.now() - chaosEnded;
  abortLives.abort();
  await allLives;
  const stuck = lives.filter((life) => life.stage !== 'done');

  // Orphans can lag an undeploy by the garbage collector (pods of deleted Jobs): wait a bounded
  // while for them to go before counting.
  const connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS as string });
  const client = new Client({ connection });
  let orphans = await orphanObjects(kc, NAMESPACE, client);
  for (let i = 0; i < 60 && orphans.size > 0; i++) {
    await sleep(1_000);
    orphans = await orphanObjects(kc, NAMESPACE, client);
  }
  const notSteady: string[] = [];
  for (const life of stuck) {
    if (life.name && (await workflowRunning(client, life.name))) {
      const { status } = await client.workflow.getHandle(buildWorkflowId(life.name)).query(buildStateQuery);
      if (!['started', 'stopped', 'failed'].includes(status)) notSteady.push(`${life.name} (${status})`);
    }
  }
  // Every life ended undeployed after it was started once: GitHub must show its commit's status
  // `success` and its deployment `inactive`, once the reporter has delivered what it queued; or no
  // deployment at all, when the build's `inactive` replaced its first report before GitHub's
  // limit let that one go (nothing is then left active on GitHub).
  const githubSettleStarted = Date.now();
  const shownOfLivesDone = () =>
    lives
      .filter((life) => life.stage === 'done')
      .map((life) => ({
        life,
        shown: shownOnGitHub(github.writes, 'oca/chaos', chaosCommit(life.index).git_commit),
      }));
  const notTheirEnd = (shownOf: ReturnType<typeof shownOfLivesDone>) =>
    shownOf.filter(
      ({ shown }) => shown.status !== 'success' || !['inactive', 'none'].includes(shown.deployment ?? ''),
    );
  while (
    notTheirEnd(shownOfLivesDone()).length &&
    Date.now() - githubSettleStarted < GITHUB_SETTLE_SECONDS * 1000
  )
    await sleep(1_000);
  const githubSettledMs = Date.now() - githubSettleStarted;
  const shownAtEnd = shownOfLivesDone();
  const notShown = notTheirEnd(shownAtEnd);
  const doubleInits = observer.doubleInits();
  const initJobs = [...observer.uids.values()].reduce((sum, uids) => sum + uids.size, 0);

  // Before they are stopped, whose exits are ours.
  const ownExits = { ...exitsOnTheirOwn };
  ending = true;
  driver.stop();
  await observer.stop();
  await connection.close();
  for (const child of Object.values(processes)) child?.kill('SIGTERM');
  await Promise.all(
    Object.values(processes).map((child) =>
      child && child.exitCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined,
    ),
  );
  await Promise.all([temporal.stop(), cluster.stop(), github.close()]);

  // Each event GitHub delivered: taken at once, taken when the service asked for it again, never.
  const taken = (guid: string) =>
    hook.attemptsOf(guid).some(({ status_code: code }) => code >= 200 && code < 300);
  const delivered = [...new Set(hook.attempts.map((attempt) => attempt.guid))];
  const takenAtOnce = delivered.filter((guid) => {
    const code = hook.attemptsOf(guid)[0].status_code;
    return code >= 200 && code < 300;
  });
  const neverTaken = delivered.filter((guid) => !taken(guid));
  const ok = (pass: boolean) => (pass ? 'ok' : '**FAIL**');
  const checks: Array<[string, string, boolean]> = [
    [
      `stuck builds (life not done ${SETTLE_SECONDS} s after the chaos)`,
      stuck.length
        ? `${stuck.length}: ${stuck.map((l) => `${l.name ?? `#${l.index}`}@${l.stage}/${l.status}`).join(', ')}`
        : '0',
      stuck.length === 0,
    ],
    [
      'orphan objects (labelled with a build whose workflow is closed)',
      orphans.size ? [...orphans].map(([b, names]) => `${b}: ${names.join(' ')}`).join('; ') : '0',
      orphans.size === 0,
    ],
    [
      'builds that ever had two init Jobs',
      doubleInits.length ? doubleInits.map((d) => `${d.build} (${d.jobs})`).join(', ') : '0',
      doubleInits.length === 0,
    ],
    [
      `peak of unfinished init Jobs (${observer.samples} samples) vs max_initializing`,
      `${observer.peak} / ${MAX_INITIALIZING}`,
      observer.peak <= MAX_INITIALIZING,
    ],
    ['builds not in a steady status', notSteady.length ? notSteady.join(', ') : '0', notSteady.length === 0],
    [
      `lives done whose status or deployment GitHub shows otherwise (${Math.round(githubSettledMs / 1000)} s after they settled)`,
      notShown.length
        ? notShown
            .map(({ life, shown }) => `${life.name ?? life.index}: ${shown.status}/${shown.deployment}`)
            .join(', ')
        : '0',
      notShown.length === 0,
    ],
    [
      'webhook events GitHub delivered that the API never took',
      neverTaken.length ? neverTaken.join(', ') : '0',
      neverTaken.length === 0,
    ],
    [
      'lives that failed (an API answer no retry changes)',
      failures.length ? failures.join('; ') : '0',
      failures.length === 0,
    ],
    [
      'restarts that never came (the run ended first)',
      missedRestarts.join(', ') || 'none',
      missedRestarts.length === 0,
    ],
  ];
  console.log(
    `\nchaos: ${BUILDS} builds, max_initializing ${MAX_INITIALIZING}, ${os.cpus().length} cores; ` +
      `chaos ${Math.round((chaosEnded - started) / 1000)} s, settled ${Math.round(settledMs / 1000)} s later\n`,
  );
  console.log('| check | value | |\n| --- | --- | --- |');
  for (const [what, value, pass] of checks) console.log(`| ${what} | ${value} | ${ok(pass)} |`);
  console.log(`| worker SIGKILLs / exits on its own | ${kills} / ${ownExits.worker} | |`);
  console.log(`| API exits on its own | ${ownExits.api} | |`);
  console.log(
    `| webhook events: taken at their delivery / taken when asked again (redeliveries) | ${takenAtOnce.length} / ${delivered.length - takenAtOnce.length - neverTaken.length} (${hook.attempts.filter((attempt) => attempt.redelivery).length}) | |`,
  );
  console.log(
    `| kube-apiserver restarts (ms) / Temporal restarts (ms) | ${restartMs['kube-apiserver'].join(', ')} / ${restartMs.temporal.join(', ')} | |`,
  );
  console.log(`| init Jobs created / init-Job watch relists | ${initJobs} / ${observer.relists} | |`);
  const refused = github.writes.filter((write) => write.status >= 400).length;
  const undeployedUnseen = shownAtEnd.filter(({ shown }) => shown.deployment === 'none').length;
  console.log(`| lives GitHub never saw a deployment of (undeployed first) | ${undeployedUnseen} | |`);
  console.log(
    `| GitHub writes accepted / refused (its rate limit) | ${github.writes.length - refused} / ${refused} | |`,
  );
  console.log(
    `| API answers (webhooks and commands, by HTTP status, or why none) | ${[...driver.answers]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([code, n]) => `${code}: ${n}`)
      .join(', ')} | |`,
  );
  const passed = checks.every(([, , pass]) => pass);
  if (passed && !process.env.CHAOS_KEEP) rmSync(workDir, { recursive: true, force: true });
  else console.log(`\nlogs kept in ${workDir}`);
  process.exit(passed ? 0 : 1);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
