import {
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { BuildActivities } from '../activities';
import { buildSearchAttributes } from '../common/search-attributes';
import type { BuildCommand, BuildState, BuildStatus, InitStatus, JobKind } from '../common/types';
import { buildStateQuery, commandSignals, type BuildPhase, type BuildWorkflowInput } from './definitions';
import { initSlotsWorkflowId, releaseSlotSignal, slotGrantedSignal } from './init-slots';

// One build's whole life (SPEC §3): deploy, initialize once, then start/stop on request until
// undeployed. Every Kubernetes side effect is an idempotent activity, retried until it succeeds.

// Retried without limit: every activity is idempotent, and a build stuck on an unreachable
// cluster shows its pending activity and last failure in the Temporal Web UI.
const retry = { initialInterval: '1 second', maximumInterval: '1 minute' };

const kube = proxyActivities<BuildActivities>({ startToCloseTimeout: '2 minutes', retry });

/** Watches last as long as what they wait for; heartbeats tell a dead worker from a long wait. */
const watches = proxyActivities<BuildActivities>({
  startToCloseTimeout: '1 day',
  heartbeatTimeout: '30 seconds',
  retry,
});

/** Short and idempotent (a signal to the init-slot coordinator): no activity task needed. */
const local = proxyLocalActivities<BuildActivities>({ startToCloseTimeout: '1 minute', retry });

/** Continue-as-new well before Temporal's history limits, keeping replays short. */
const MAX_HISTORY_EVENTS = 2_000;
const CLEANUP_RETRY_MAX_SECONDS = 3_600;

export async function buildWorkflow(input: BuildWorkflowInput): Promise<void> {
  const { build, settings } = input;
  const state: BuildState = input.resume?.state ?? {
    ...build,
    status: 'initializing',
    init_status: 'todo',
    // When the build was asked for (the workflow's start), not when a worker first ran it: the
    // newest build of a branch is the one requested last.
    created: workflowInfo().startTime.toISOString(),
    last_scaled: null,
    last_error: null,
  };
  const commands: BuildCommand[] = input.resume?.commands ?? [];
  // Cost (issue 10): each transition is one activity (activities/index.ts
  // `transitionActivities`) and the slot request a local activity. Builds started before
  // replay the single steps they ran.
  const merged = patched('merged-transitions');
  for (const [command, signal] of Object.entries(commandSignals)) {
    setHandler(signal, () => void commands.push(command as BuildCommand));
  }
  setHandler(buildStateQuery, () => ({ ...state, pending_commands: [...commands] }));

  const setStatus = (status: BuildStatus, initStatus: InitStatus = state.init_status) => {
    if (status !== state.status || initStatus !== state.init_status) {
      log.info('build status changed', { build: build.name, from: state.status, to: status, initStatus });
    }
    state.status = status;
    state.init_status = initStatus;
    upsertSearchAttributes(buildSearchAttributes(state));
  };

  const stampScaled = () => (state.last_scaled = new Date().toISOString());
  const scale = async (replicas: number) => {
    await kube.scaleBuild(build.name, replicas, stampScaled());
  };

  const interruptRequested = () => commands.includes('undeploy') || commands.includes('reset');

  /**
   * The phase an interrupting command leads to; the commands it overrides are dropped. The
   * status changes at once, so that no query sees the command gone and the build unchanged.
   */
  const takeInterrupt = (): BuildPhase => {
    const undeploy = commands.includes('undeploy');
    commands.splice(0, undeploy ? commands.length : commands.indexOf('reset') + 1);
    if (undeploy) setStatus('undeploying');
    else setStatus('initializing', 'todo');
    return undeploy ? 'undeploy' : 'redeploy';
  };

  async function deploy(): Promise<BuildPhase> {
    setStatus('initializing', 'todo');
    if (merged) {
      await kube.deployBuild(build);
      return 'initialize';
    }
    await kube.applyKubefiles(build, 'deployment');
    await kube.reportCommitStatus(build, 'pending', 'deployed, waiting to initialize');
    return 'initialize';
  }

  let slotGranted = false;
  setHandler(slotGrantedSignal, () => void (slotGranted = true));

  /** Waits in line for one of the `max_initializing` init slots; false if interrupted first. */
  async function acquireInitSlot(): Promise<boolean> {
    slotGranted = false;
    await (merged ? local : kube).requestInitSlot(workflowInfo().workflowId, settings.maxInitializing);
    const granted = await untilInterrupted(() => condition(() => slotGranted), interruptRequested);
    if (granted !== INTERRUPTED) return true;
    await releaseInitSlot();
    return false;
  }

  async function releaseInitSlot(): Promise<void> {
    try {
      const { taskQueue, workflowId } = workflowInfo();
      await getExternalWorkflowHandle(initSlotsWorkflowId(taskQueue)).signal(releaseSlotSignal, workflowId);
    } catch (error) {
      // No coordinator means no slot to give back.
      log.warn('could not release init slot', { build: build.name, error: String(error) });
    }
  }

  async function initialize(): Promise<BuildPhase> {
    setStatus('initializing', 'todo');
    if (!(await acquireInitSlot())) return takeInterrupt();
    try {
      return await initializeHoldingSlot();
    } finally {
      await releaseInitSlot();
    }
  }

  async function initializeHoldingSlot(): Promise<BuildPhase> {
    if (merged) {
      await kube.startInitJob(build);
      setStatus('initializing', 'started');
    } else {
      await kube.deleteJobs(build.name, 'initialize');
      await kube.applyKubefiles(build, 'initialize');
      await kube.setInitStatus(build.name, 'started');
      setStatus('initializing', 'started');
      await kube.reportCommitStatus(build, 'pending', 'initializing');
    }
    const outcome = await untilInterrupted(
      () => watches.waitForJob(build.name, 'initialize'),
      interruptRequested,
      `${settings.initTimeoutSeconds} seconds`,
    );
    if (outcome === INTERRUPTED) return takeInterrupt();
    if (outcome === TIMED_OUT || !outcome.succeeded) {
      state.last_error =
        outcome === TIMED_OUT
          ? `initialization timed out after ${settings.initTimeoutSeconds} s`
          : outcome.reason;
      log.warn('build initialization failed', { build: build.name, reason: state.last_error });
      await kube.keepInitLog(build.name);
      if (outcome === TIMED_OUT) await kube.deleteJobs(build.name, 'initialize');
      await kube.setInitStatus(build.name, 'failed');
      setStatus('failed', 'failed');
      await kube.reportCommitStatus(build, 'failure', 'initialization failed');
      return 'live';
    }
    state.last_error = null;
    if (merged) {
      setStatus('starting', 'succeeded');
      await kube.finishInitAndStart(build, stampScaled());
      return 'live';
    }
    await kube.setInitStatus(build.name, 'succeeded');
    await kube.applyKubefiles(build, 'stop');
    setStatus('stopped', 'succeeded');
    await kube.reportCommitStatus(build, 'success', 'ready');
    await start();
    return 'live';
  }

  // The status changes before the activities run: a query (eviction's, say) made during the
  // transition must see where the build is heading, or it would act on it twice.
  async function start(): Promise<void> {
    setStatus('starting');
    if (merged) return kube.startDeployment(build, stampScaled());
    await kube.applyKubefiles(build, 'start');
    await scale(1);
  }

  async function stop(): Promise<void> {
    setStatus('stopping');
    if (merged) return kube.stopDeployment(build, stampScaled());
    await scale(0);
    await kube.applyKubefiles(build, 'stop');
  }

  /** One step of the live phase: finish a transition, or act on the next command. */
  async function live(): Promise<BuildPhase> {
    const transitioning = state.status === 'starting' || state.status === 'stopping';
    if (transitioning && commands.length === 0) {
      const replicas = state.status === 'starting' ? 1 : 0;
      const ready = await untilInterrupted(
        () => watches.waitForReadyReplicas(build.name, replicas),
        () => commands.length > 0,
      );
      if (ready !== INTERRUPTED) setStatus(replicas ? 'started' : 'stopped');
      return 'live';
    }
    await condition(() => commands.length > 0);
    if (interruptRequested()) return takeInterrupt();
    const command = commands.shift();
    if (command === 'start') {
      if (state.status === 'failed') return 'initialize';
      if (state.status === 'stopped' || state.status === 'stopping') await start();
    } else if (command === 'stop') {
      if (state.status === 'started' || state.status === 'starting') await stop();
    }
    return 'live';
  }

  async function runJobUntilSucceeded(kind: JobKind): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await kube.deleteJobs(build.name, kind);
      await kube.applyKubefiles(build, kind);
      const outcome = await watches.waitForJob(build.name, kind);
      if (outcome.succeeded) return;
      state.last_error = `${kind} job failed (attempt ${attempt}): ${outcome.reason}`;
      log.warn('build job failed, will retry', { build: build.name, kind, attempt, reason: outcome.reason });
      await sleep(`${Math.min(60 * 2 ** (attempt - 1), CLEANUP_RETRY_MAX_SECONDS)} seconds`);
    }
  }

  async function undeploy(): Promise<void> {
    setStatus('undeploying');
    await scale(0);
    await kube.deleteJobs(build.name, 'initialize');
    if (!settings.noCleanupJob) await runJobUntilSucceeded('cleanup');
    await kube.deleteBuild(build.name);
    log.info('build undeployed', { build: build.name });
  }

  /** Reset: the init job is killed at once, not when the build's turn for a slot comes. */
  async function redeploy(): Promise<BuildPhase> {
    setStatus('initializing', 'todo');
    await kube.deleteJobs(build.name, 'initialize');
    return deploy();
  }

  const phases: Record<Exclude<BuildPhase, 'undeploy'>, () => Promise<BuildPhase>> = {
    deploy,
    redeploy,
    initialize,
    live,
  };
  let phase: BuildPhase = input.resume?.phase ?? 'deploy';
  while (phase !== 'undeploy') {
    phase = await phases[phase]();
    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength > (settings.historyLimit ?? MAX_HISTORY_EVENTS)) {
      await continueAsNew<typeof buildWorkflow>({ build, settings, resume: { state, phase, commands } });
    }
  }
  await undeploy();
}

const INTERRUPTED = Symbol('interrupted');
const TIMED_OUT = Symbol('timed out');

/**
 * Runs `work` until it completes, `interrupt()` becomes true, or `timeout` passes; whatever
 * loses the race is cancelled (an activity is told through its heartbeat).
 */
async function untilInterrupted<T>(
  work: () => Promise<T>,
  interrupt: () => boolean,
  timeout?: Duration,
): Promise<T | typeof INTERRUPTED | typeof TIMED_OUT> {
  const scope = new CancellationScope();
  const done = scope.run(work);
  const stopped = scope.run(async () =>
    timeout === undefined ? (await condition(interrupt), true) : await condition(interrupt, timeout),
  );
  try {
    return await Promise.race([done, stopped.then((interrupted) => (interrupted ? INTERRUPTED : TIMED_OUT))]);
  } finally {
    scope.cancel();
    await Promise.allSettled([done, stopped]);
  }
}
