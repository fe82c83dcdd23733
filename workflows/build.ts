import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { BuildActivities } from '../activities';
import { buildSearchAttributes } from '../common/search-attributes';
import { judgeCommand } from '../common/commands';
import type { BuildCommand, BuildState, BuildStatus, InitStatus, JobKind } from '../common/types';
import {
  buildStateQuery,
  commandSignals,
  commandUpdate,
  CommandRefusal,
  forceUndeploySignal,
  type BuildPhase,
  type BuildWorkflowInput,
} from './definitions';
import { recordVisits, untilReadyOrIdle } from './idle-stop';
import { initSlotsWorkflowId, releaseSlotSignal, slotGrantedSignal } from './init-slots';

// One build's whole life (SPEC §3): deploy, initialize once, then start/stop on request until
// undeployed. Every Kubernetes side effect is an idempotent activity, retried until it succeeds.

// Retried without limit: every activity is idempotent, and a build stuck on an unreachable
// cluster shows its pending activity and last failure in the Temporal Web UI.
const retry = { initialInterval: '1 second', maximumInterval: '1 minute' };

const activitiesV1 = proxyActivities<BuildActivities>({ startToCloseTimeout: '2 minutes', retry });

/**
 * The same, heartbeated by the worker while they run (worker/heartbeats.ts), so that those a
 * killed worker held are retried within seconds, not after the 2 minutes: with the worker killed
 * every 20 s (`npm run chaos`), builds otherwise made no progress at all.
 */
const heartbeatedActivities = proxyActivities<BuildActivities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '15 seconds',
  retry,
});

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
  const activities = patched('activity-heartbeats') ? heartbeatedActivities : activitiesV1;
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
  /** Queues `command` unless it changes nothing; returns why it was refused, if it was. */
  const receive = (command: BuildCommand) => {
    const verdict = judgeCommand(state.status, commands, command);
    if (verdict.kind === 'accept') commands.push(command);
    else if (verdict.kind === 'cancel-pending') commands.splice(commands.lastIndexOf(verdict.command), 1);
    return verdict;
  };
  for (const [command, signal] of Object.entries(commandSignals)) {
    setHandler(signal, () => void receive(command as BuildCommand));
  }
  setHandler(commandUpdate, (command) => void receive(command), {
    // Refused commands leave no trace in the history: floods of them cost nothing.
    validator(command) {
      const verdict = judgeCommand(state.status, commands, command);
      if (verdict.kind === 'no-op' || verdict.kind === 'not-possible') {
        const type = verdict.kind === 'no-op' ? CommandRefusal.noOp : CommandRefusal.notPossible;
        throw ApplicationFailure.create({ type, message: verdict.reason, nonRetryable: true });
      }
    },
  });
  setHandler(buildStateQuery, () => ({ ...state, pending_commands: [...commands] }));
  recordVisits(state);

  // Why an admin forced the undeploy, once one did: the cleanup Job is then given up. Kept in the
  // state, so that a continue-as-new between the signal and the undeploy does not lose it.
  setHandler(forceUndeploySignal, (reason) => {
    state.forced_undeploy = reason || 'no reason given';
    state.last_error = `undeploy forced, without the cleanup job: ${state.forced_undeploy}`;
    log.warn('undeploy forced', { build: build.name, reason: state.forced_undeploy });
    if (state.status !== 'undeploying' && !commands.includes('undeploy')) commands.push('undeploy');
  });
  const forced = () => Boolean(state.forced_undeploy);

  const setStatus = (status: BuildStatus, initStatus: InitStatus = state.init_status) => {
    if (status !== state.status || initStatus !== state.init_status) {
      log.info('build status changed', { build: build.name, from: state.status, to: status, initStatus });
    }
    state.status = status;
    state.init_status = initStatus;
    upsertSearchAttributes(buildSearchAttributes(state));
  };

  /**
   * Whether the transition under way (starting, stopping) has made its Kubernetes changes. Not
   * when a command interrupted it and then went away (a stop cancelled by a start), nor after a
   * continue-as-new: it is then made again, which is idempotent.
   */
  let transitionApplied = false;

  /** Stamps `last_scaled` (also `runboat/last-scaled` on the Deployment) and returns it. */
  const stampScaled = () => (state.last_scaled = new Date().toISOString());

  const interruptRequested = () => commands.includes('undeploy') || commands.includes('reset');

  /**
   * The activities of every phase but undeploy: a pending undeploy or reset abandons the one
   * running, even one retrying without end against a refusing cluster. They are idempotent, so
   * what the next phase redoes or deletes converges.
   */
  const kube = interruptible(activities, interruptRequested);

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
    // Each transition is one activity (activities/index.ts `transitionActivities`): one round
    // trip, one workflow task.
    await kube.deployBuild(build);
    return 'initialize';
  }

  let slotGranted = false;
  setHandler(slotGrantedSignal, () => void (slotGranted = true));

  /** Waits in line for one of the `max_initializing` init slots; false if interrupted first. */
  async function acquireInitSlot(): Promise<boolean> {
    slotGranted = false;
    // Not interruptible: once asked for, the slot is waited for and handed back below.
    await local.requestInitSlot(workflowInfo().workflowId, settings.maxInitializing);
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
    await kube.startInitJob(build);
    setStatus('initializing', 'started');
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
    transitionApplied = false;
    setStatus('starting', 'succeeded');
    await kube.finishInitAndStart(build, stampScaled());
    transitionApplied = true;
    return 'live';
  }

  // The status changes before the activities run: a query (eviction's, say) made during the
  // transition must see where the build is heading, or it would act on it twice.
  async function start(): Promise<void> {
    transitionApplied = false;
    setStatus('starting');
    await kube.startDeployment(build, stampScaled());
    transitionApplied = true;
  }

  async function stop(): Promise<void> {
    transitionApplied = false;
    setStatus('stopping');
    await kube.stopDeployment(build, stampScaled());
    transitionApplied = true;
  }

  /** One step of the live phase: finish a transition, or act on the next command. */
  async function live(): Promise<BuildPhase> {
    const transitioning = state.status === 'starting' || state.status === 'stopping';
    if (transitioning && commands.length === 0 && !transitionApplied) {
      await untilInterrupted(state.status === 'starting' ? start : stop, () => commands.length > 0);
      return 'live';
    }
    if (transitioning && commands.length === 0) {
      const replicas = state.status === 'starting' ? 1 : 0;
      const ready = await untilInterrupted(
        () => watches.waitForReadyReplicas(build.name, replicas),
        () => commands.length > 0,
      );
      if (ready !== INTERRUPTED) setStatus(replicas ? 'started' : 'stopped');
      return 'live';
    }
    if (!(await untilReadyOrIdle(() => commands.length > 0, state, settings.autoStopAfterSeconds))) {
      log.info('build not visited for a while, stopping it', {
        build: build.name,
        idle: settings.autoStopAfterSeconds,
      });
      await untilInterrupted(stop, () => commands.length > 0);
      return 'live';
    }
    if (interruptRequested()) return takeInterrupt();
    const command = commands.shift();
    if (command === 'start' && state.status === 'failed') return 'initialize';
    const transition =
      command === 'start' && (state.status === 'stopped' || state.status === 'stopping')
        ? start
        : command === 'stop' && (state.status === 'started' || state.status === 'starting')
          ? stop
          : undefined;
    // The next command takes over a transition stuck retrying: a stop is never held up by a
    // start the cluster refuses, nor the other way round.
    if (transition) await untilInterrupted(transition, () => commands.length > 0);
    return 'live';
  }

  /** Runs the job until it succeeds, or until `giveUp()` (a forced undeploy) says to stop trying. */
  async function runJobUntilSucceeded(kind: JobKind, giveUp: () => boolean): Promise<void> {
    for (let attempt = 1; !giveUp(); attempt++) {
      await activities.deleteJobs(build.name, kind);
      await activities.applyKubefiles(build, kind);
      const outcome = await untilInterrupted(() => watches.waitForJob(build.name, kind), giveUp);
      if (outcome === INTERRUPTED || outcome === TIMED_OUT || outcome.succeeded) return;
      state.last_error = `${kind} job failed (attempt ${attempt}): ${outcome.reason}`;
      log.warn('build job failed, will retry', { build: build.name, kind, attempt, reason: outcome.reason });
      await condition(giveUp, `${Math.min(60 * 2 ** (attempt - 1), CLEANUP_RETRY_MAX_SECONDS)} seconds`);
    }
  }

  async function undeploy(): Promise<void> {
    setStatus('undeploying');
    await activities.scaleBuild(build.name, 0, stampScaled());
    await activities.deleteJobs(build.name, 'initialize');
    if (!settings.noCleanupJob) {
      try {
        await runJobUntilSucceeded('cleanup', forced);
      } catch (error) {
        // A cleanup that can never run (its kubefiles no longer render, say) must not keep
        // the build's objects forever: they go, and the history says what was skipped.
        const reason = permanentFailure(error);
        if (reason === undefined) throw error;
        state.last_error = `cleanup skipped: ${reason}`;
        log.warn('cleanup job cannot run; deleting the build without it', { build: build.name, reason });
      }
    }
    await activities.deleteBuild(build.name);
    await activities.reportUndeployed(build);
    log.info('build undeployed', { build: build.name, forced: state.forced_undeploy });
  }

  /**
   * A failure retrying cannot fix (kubefiles that no longer render, objects the cluster
   * refuses): the build stays, `failed` with the reason, until someone resets or undeploys it.
   */
  async function fail(reason: string): Promise<BuildPhase> {
    state.last_error = reason;
    log.warn('build failed', { build: build.name, reason });
    setStatus('failed');
    await activities.reportCommitStatus(build, 'failure', reason.slice(0, 140));
    return 'live';
  }

  async function runPhase(phase: Exclude<BuildPhase, 'undeploy'>): Promise<BuildPhase> {
    try {
      return await phases[phase]();
    } catch (error) {
      if (error instanceof Interrupted) return takeInterrupt();
      const reason = permanentFailure(error);
      if (reason === undefined) throw error;
      return fail(reason);
    }
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
  try {
    while (phase !== 'undeploy') {
      phase = await runPhase(phase);
      const info = workflowInfo();
      if (info.continueAsNewSuggested || info.historyLength > (settings.historyLimit ?? MAX_HISTORY_EVENTS)) {
        await continueAsNew<typeof buildWorkflow>({ build, settings, resume: { state, phase, commands } });
      }
    }
  } catch (error) {
    // Cancelled from the Temporal UI or CLI: the build goes with its workflow, never left behind.
    if (!isCancellation(error)) throw error;
    log.warn('build workflow cancelled: undeploying', { build: build.name });
    await CancellationScope.nonCancellable(async () => {
      await releaseInitSlot();
      await undeploy();
    });
    throw error;
  }
  await undeploy();
}

/** The reason of a failure that retrying cannot fix, or undefined for any other error. */
function permanentFailure(error: unknown): string | undefined {
  if (!(error instanceof ActivityFailure)) return undefined;
  const cause = error.cause;
  return cause instanceof ApplicationFailure && cause.nonRetryable ? cause.message : undefined;
}

/** Thrown by an interruptible activity when a pending undeploy or reset abandons it. */
class Interrupted extends Error {}

/** `activities` with every call abandoned (throwing Interrupted) once `interrupt()` holds. */
function interruptible<T extends object>(activities: T, interrupt: () => boolean): T {
  return new Proxy(activities, {
    get(target, key) {
      const activity = Reflect.get(target, key) as (...args: unknown[]) => Promise<unknown>;
      return async (...args: unknown[]) => {
        const result = await untilInterrupted(() => activity(...args), interrupt);
        if (result === INTERRUPTED) throw new Interrupted();
        return result;
      };
    },
  });
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
