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
import {
  buildSearchAttributes,
  changedSearchAttributes,
  searchAttributes,
  updatedSearchAttribute,
} from '../common/search-attributes';
import { judgeCommand } from '../common/commands';
import type {
  BuildCommand,
  BuildSnapshot,
  BuildState,
  BuildStatus,
  InitStatus,
  JobKind,
  JobOutcome,
} from '../common/types';
import {
  buildStateQuery,
  commandSignals,
  commandUpdate,
  CommandRefusal,
  forceUndeploySignal,
  initSlotsWorkflowId,
  releaseSlotSignal,
  slotGrantedSignal,
  type BuildPhase,
  type BuildWorkflowInput,
  type ReadyWait,
} from './definitions';
import { takeEvictionOrders } from './eviction';
import { recordVisits, untilReadyOrIdle } from './idle-stop';
import { readyWaitAfter } from './ready-wait';

// One build's whole life (SPEC §3): deploy, initialize once, then start/stop on request until
// undeployed. Every Kubernetes side effect is an idempotent activity, retried until it succeeds.

// Retried without limit: every activity is idempotent, and a build stuck on an unreachable
// cluster shows its pending activity and last failure in the Temporal Web UI.
const retry = { initialInterval: '1 second', maximumInterval: '1 minute' };

/**
 * Short steps (Kubernetes, GitHub), each retried until it succeeds; undeploy runs only these.
 * Heartbeated by the worker while they run (worker/heartbeats.ts), so that those a killed worker
 * held are retried within seconds, not after the 2 minutes: with the worker killed every 20 s
 * (`npm run chaos`), builds otherwise made no progress at all. (Activity options are not part of
 * what a replay compares: no patch needed.)
 */
const steps = proxyActivities<BuildActivities>({
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
const coordination = proxyLocalActivities<BuildActivities>({ startToCloseTimeout: '1 minute', retry });

/** Continue-as-new well before Temporal's history limits, keeping replays short. */
const MAX_HISTORY_EVENTS = 2_000;
const CLEANUP_RETRY_MAX_SECONDS = 3_600;
const UPDATED_ATTRIBUTE_PATCH = 'runboat-updated-search-attribute';
const CLEANUP_CONTINUES_PATCH = 'continue-as-new-during-cleanup';
/**
 * Every patch a run calls costs it two events (a marker and an upsert of TemporalChangeVersion,
 * which the server indexes like any upsert). A run that has this one started on code that has
 * every earlier patch too, so it calls no other. It also upserts only what changed, and hands
 * its init slot back from the activity that starts the build (one workflow task less).
 */
const LEAN_HISTORY_PATCH = 'lean-history';
/**
 * A build that comes to rest (stopped, or failed) continues as new, so that the next command it
 * gets (eviction's undeploy, a user's start, a visit) replays a handful of events, not its whole
 * life (most of OCA's 7,000 builds sit stopped, and a worker holds a few hundred of them). Runs
 * that have it have every earlier patch too (see LEAN_HISTORY_PATCH).
 */
const CONTINUE_AT_REST_PATCH = 'continue-as-new-at-rest';
/**
 * Undeploy in two activities (the cleanup Job's attempt, scaling down first; then the removal of
 * every object and the GitHub deployment), or one without a cleanup Job, where it took seven
 * (four). Runs that have it have every earlier patch too (see LEAN_HISTORY_PATCH).
 */
const LEAN_UNDEPLOY_PATCH = 'lean-undeploy';
/** A run at rest shorter than this stays: a run continued at rest is about 6 events. */
const REST_CONTINUE_EVENTS = 20;

export async function buildWorkflow(input: BuildWorkflowInput): Promise<void> {
  const { build, settings, repo } = input;
  // First: a run recorded without them replays the patches before them as it recorded them.
  const leanUndeploy = patched(LEAN_UNDEPLOY_PATCH);
  const continuesAtRest = leanUndeploy || patched(CONTINUE_AT_REST_PATCH);
  const lean = continuesAtRest || patched(LEAN_HISTORY_PATCH);
  const state: BuildState = input.resume?.state ?? {
    ...build,
    status: 'initializing',
    init_status: 'todo',
    // When the build was asked for, not when a worker first ran it: the newest build of a branch
    // is the one requested last. The API stamps it in the start's search attributes (lean runs
    // keep that stamp, so that their first task need not rewrite it).
    created: (
      (lean ? workflowInfo().typedSearchAttributes.get(searchAttributes.created) : undefined) ??
      workflowInfo().startTime
    ).toISOString(),
    last_scaled: null,
    last_error: null,
  };
  const commands: BuildCommand[] = input.resume?.commands ?? [];
  /** Someone waiting for the build to be started: a new build's requester from the start. */
  let readyWait: ReadyWait | undefined = input.resume
    ? input.resume.readyWait
    : { since: Date.parse(state.created), request: 'new' };

  /**
   * Signals (the no-worker path, visits) add history while the workflow waits, and a wait can
   * last a 20-minute init or days of idling: every wait ends when the history is full, and the
   * run continues as new from where it was. Runs started by v1 wait as v1 did until their next
   * continue-as-new (decided once, at the run's start).
   */
  const continuesMidWait = lean || patched('continue-as-new-mid-wait');
  const historyFull = () => {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength > (settings.historyLimit ?? MAX_HISTORY_EVENTS);
  };
  const mustContinue = () => continuesMidWait && historyFull();
  const restsWithLongHistory = () =>
    continuesAtRest &&
    commands.length === 0 &&
    (state.status === 'stopped' || state.status === 'failed') &&
    workflowInfo().historyLength > REST_CONTINUE_EVENTS;
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
  const snapshot = (): BuildSnapshot => ({ ...state, pending_commands: [...commands] });
  setHandler(buildStateQuery, snapshot);
  takeEvictionOrders(snapshot, receive);
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
    readyWait = readyWaitAfter(readyWait, status);
    if (lean) {
      const changed = changedSearchAttributes(
        workflowInfo().typedSearchAttributes,
        buildSearchAttributes(state),
      );
      if (changed.length) upsertSearchAttributes([...changed, updatedSearchAttribute(new Date())]);
      return;
    }
    // RunboatUpdated changes the upsert's content: builds recorded before it replay without it.
    const updated = patched(UPDATED_ATTRIBUTE_PATCH) ? new Date() : undefined;
    upsertSearchAttributes(buildSearchAttributes(state, updated));
  };

  /**
   * Whether the transition under way (starting, stopping) has made its Kubernetes changes. Not
   * when a command or a full history interrupted it (a stop cancelled by a start): it is then
   * made again, which is idempotent. Carried over by continue-as-new, so that a transition
   * already made is not made again (restamping `last_scaled`, which eviction orders by).
   */
  let transitionApplied = input.resume?.transitionApplied ?? false;

  /** Stamps `last_scaled` (also `runboat/last-scaled` on the Deployment) and returns it. */
  const stampScaled = () => (state.last_scaled = new Date().toISOString());

  const interruptRequested = () => commands.includes('undeploy') || commands.includes('reset');

  /**
   * The activities of every phase but undeploy: a pending undeploy or reset abandons the one
   * running, even one retrying without end against a refusing cluster. They are idempotent, so
   * what the next phase redoes or deletes converges.
   */
  const interruptibleSteps = interruptible(steps, interruptRequested);

  /**
   * The phase an interrupting command leads to; the commands it overrides are dropped. The
   * status changes at once, so that no query sees the command gone and the build unchanged.
   */
  const takeInterrupt = (): BuildPhase => {
    const undeploy = commands.includes('undeploy');
    commands.splice(0, undeploy ? commands.length : commands.indexOf('reset') + 1);
    if (undeploy) setStatus('undeploying');
    else {
      setStatus('initializing', 'todo');
      readyWait = { since: Date.now(), request: 'reset' };
    }
    return undeploy ? 'undeploy' : 'redeploy';
  };

  async function deploy(): Promise<BuildPhase> {
    setStatus('initializing', 'todo');
    // Each transition is one activity (activities/index.ts `transitionActivities`): one round
    // trip, one workflow task.
    await interruptibleSteps.deployBuild(build, repo);
    return 'initialize';
  }

  let slotGranted = false;
  /** The slot was handed back by the activity that started the build (lean runs). */
  let slotReleased = false;
  /** The token of the latest slot request; none in runs started before tokens (v1). */
  let slotToken: string | undefined;
  let slotRequests = 0;
  // A grant without a token comes from a coordinator run that predates tokens.
  setHandler(slotGrantedSignal, (token) => {
    if (token === undefined || token === slotToken) slotGranted = true;
  });

  /** Waits in line for one of the `max_initializing` init slots. */
  async function acquireInitSlot(): Promise<'granted' | 'interrupted' | 'history full'> {
    slotGranted = false;
    slotReleased = false;
    if (lean || patched('init-slot-grant-token')) slotToken = `${workflowInfo().runId}/${++slotRequests}`;
    // Not interruptible: once asked for, the slot is waited for and handed back below.
    await coordination.requestInitSlot(workflowInfo().workflowId, settings.maxInitializing, slotToken);
    const granted = await untilInterrupted(
      () => condition(() => slotGranted),
      () => interruptRequested() || mustContinue(),
    );
    if (granted !== INTERRUPTED) return 'granted';
    // The build keeps its place in line: the next run asks again, which the coordinator answers
    // without queueing it twice, and by granting again a slot already granted.
    if (!interruptRequested()) return 'history full';
    await releaseInitSlot();
    return 'interrupted';
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
    const slot = await acquireInitSlot();
    if (slot === 'history full') return 'initialize';
    if (slot === 'interrupted') return takeInterrupt();
    return holdingInitSlot(initializeHoldingSlot);
  }

  /** Runs `work`, then hands the slot back, unless the next run goes on with the same init. */
  async function holdingInitSlot(work: () => Promise<BuildPhase>): Promise<BuildPhase> {
    let next: BuildPhase | undefined;
    try {
      next = await work();
      return next;
    } finally {
      if (next !== 'init-watch' && !slotReleased) await releaseInitSlot();
    }
  }

  /** When the running init Job times out; carried over by continue-as-new. */
  let initDeadline = input.resume?.initDeadline;
  /**
   * Names the init Job of lean runs, which start it and wait for it in one activity: a retry,
   * or the next run after a continue-as-new, runs that activity again and keeps the same Job.
   */
  let initAttempt = input.resume?.initAttempt;

  async function initializeHoldingSlot(): Promise<BuildPhase> {
    if (lean) {
      setStatus('initializing', 'started');
      initDeadline = Date.now() + settings.initTimeoutSeconds * 1000;
      initAttempt = slotToken;
      try {
        return await watchInitJob(`${settings.initTimeoutSeconds} seconds`);
      } catch (error) {
        // The Job could not be started (its kubefiles no longer render, say).
        state.init_status = 'todo';
        throw error;
      }
    }
    await interruptibleSteps.startInitJob(build, repo);
    setStatus('initializing', 'started');
    initDeadline = Date.now() + settings.initTimeoutSeconds * 1000;
    return watchInitJob(`${settings.initTimeoutSeconds} seconds`);
  }

  /** A run continued as new mid-init: the same Job watched, the same slot held, the same deadline. */
  async function resumeInitWatch(): Promise<BuildPhase> {
    const remaining = (initDeadline ?? Date.now()) - Date.now();
    return holdingInitSlot(() => watchInitJob(Math.max(remaining, 1)));
  }

  async function watchInitJob(timeout: Duration): Promise<BuildPhase> {
    const attempt = initAttempt;
    const outcome = await untilInterrupted(
      attempt === undefined
        ? () => watches.waitForJob(build.name, 'initialize')
        : () => watches.runInitJob(build, repo, attempt),
      () => interruptRequested() || mustContinue(),
      timeout,
    );
    if (outcome === INTERRUPTED) return interruptRequested() ? takeInterrupt() : 'init-watch';
    if (outcome === TIMED_OUT || !outcome.succeeded) {
      state.last_error =
        outcome === TIMED_OUT
          ? `initialization timed out after ${settings.initTimeoutSeconds} s`
          : outcome.reason;
      log.warn('build initialization failed', { build: build.name, reason: state.last_error });
      await interruptibleSteps.keepInitLog(build.name);
      if (outcome === TIMED_OUT) await interruptibleSteps.deleteJobs(build.name, 'initialize');
      await interruptibleSteps.setInitStatus(build.name, 'failed');
      setStatus('failed', 'failed');
      await interruptibleSteps.reportCommitStatus(build, 'failure', 'initialization failed');
      return 'live';
    }
    state.last_error = null;
    transitionApplied = false;
    setStatus('starting', 'succeeded');
    const scaledAt = stampScaled();
    if (lean) {
      await interruptibleSteps.finishInitAndStart(build, scaledAt, repo, {
        releaseInitSlotOf: workflowInfo().workflowId,
      });
      slotReleased = true;
    } else {
      await interruptibleSteps.finishInitAndStart(build, scaledAt, repo);
    }
    transitionApplied = true;
    return 'live';
  }

  // The status changes before the activities run: a query (eviction's, say) made during the
  // transition must see where the build is heading, or it would act on it twice.
  async function start(): Promise<void> {
    transitionApplied = false;
    setStatus('starting');
    await interruptibleSteps.startDeployment(build, stampScaled(), repo);
    transitionApplied = true;
  }

  async function stop(): Promise<void> {
    transitionApplied = false;
    setStatus('stopping');
    await interruptibleSteps.stopDeployment(build, stampScaled(), repo);
    transitionApplied = true;
  }

  /** A command to act on, or a history to continue as new: the live phase's waits end. */
  const liveWaitOver = () => commands.length > 0 || mustContinue();

  /** One step of the live phase: finish a transition, or act on the next command. */
  async function live(): Promise<BuildPhase> {
    const transitioning = state.status === 'starting' || state.status === 'stopping';
    if (transitioning && commands.length === 0 && !transitionApplied) {
      await untilInterrupted(state.status === 'starting' ? start : stop, liveWaitOver);
      return 'live';
    }
    if (transitioning && commands.length === 0) {
      const replicas = state.status === 'starting' ? 1 : 0;
      const ready = await untilInterrupted(
        () => watches.waitForReadyReplicas(build.name, replicas),
        liveWaitOver,
      );
      if (ready !== INTERRUPTED) setStatus(replicas ? 'started' : 'stopped');
      return 'live';
    }
    if (!(await untilReadyOrIdle(liveWaitOver, state, settings.autoStopAfterSeconds))) {
      log.info('build not visited for a while, stopping it', {
        build: build.name,
        idle: settings.autoStopAfterSeconds,
      });
      await untilInterrupted(stop, liveWaitOver);
      return 'live';
    }
    if (interruptRequested()) return takeInterrupt();
    if (commands.length === 0) return 'live';
    const command = commands.shift();
    if (command === 'start' && state.status === 'failed') {
      readyWait = { since: Date.now(), request: 'reset' };
      return 'initialize';
    }
    const transition =
      command === 'start' && (state.status === 'stopped' || state.status === 'stopping')
        ? start
        : command === 'stop' && (state.status === 'started' || state.status === 'starting')
          ? stop
          : undefined;
    if (transition === start) readyWait ??= { since: Date.now(), request: 'start' };
    // The next command takes over a transition stuck retrying: a stop is never held up by a
    // start the cluster refuses, nor the other way round.
    if (transition) await untilInterrupted(transition, liveWaitOver);
    return 'live';
  }

  /** Ends this run; the next one goes on from `phase` with what the wait under way needs. */
  function continueFrom(phase: BuildPhase, cleanupAttempt?: number): Promise<never> {
    return continueAsNew<typeof buildWorkflow>({
      build,
      settings,
      repo,
      resume: {
        state,
        phase,
        commands,
        initDeadline,
        initAttempt,
        transitionApplied,
        cleanupAttempt,
        readyWait,
      },
    });
  }

  /** Runs the job until it succeeds, or until `giveUp()` (a forced undeploy) says to stop trying. */
  async function runJobUntilSucceeded(kind: JobKind, giveUp: () => boolean, firstAttempt = 1): Promise<void> {
    for (let attempt = firstAttempt; !giveUp(); attempt++) {
      // A cleanup that keeps failing retries for as long as it takes (days, backing off to an
      // hour): its history is bounded the same way as every other wait's.
      if (
        attempt > firstAttempt &&
        kind === 'cleanup' &&
        mustContinue() &&
        (lean || patched(CLEANUP_CONTINUES_PATCH))
      ) {
        await continueFrom('undeploy', attempt);
      }
      const outcome = await runJob(kind, attempt, giveUp);
      if (outcome === INTERRUPTED || outcome === TIMED_OUT || outcome.succeeded) return;
      state.last_error = `${kind} job failed (attempt ${attempt}): ${outcome.reason}`;
      log.warn('build job failed, will retry', { build: build.name, kind, attempt, reason: outcome.reason });
      await condition(giveUp, `${Math.min(60 * 2 ** (attempt - 1), CLEANUP_RETRY_MAX_SECONDS)} seconds`);
    }
  }

  /**
   * One attempt of the job, given up when `giveUp()` says; lean undeploys scale the build down in
   * the first attempt's activity. Older runs replay their three steps, only the watch given up.
   */
  async function runJob(
    kind: JobKind,
    attempt: number,
    giveUp: () => boolean,
  ): Promise<JobOutcome | typeof INTERRUPTED | typeof TIMED_OUT> {
    if (leanUndeploy && kind === 'cleanup') {
      const name = `${workflowInfo().firstExecutionRunId}.cleanup.${attempt}`;
      const scaledAt = attempt === 1 ? stampScaled() : undefined;
      return untilInterrupted(() => watches.runCleanupJob(build, repo, name, scaledAt), giveUp);
    }
    await steps.deleteJobs(build.name, kind);
    await steps.applyKubefiles(build, kind, repo);
    return untilInterrupted(() => watches.waitForJob(build.name, kind), giveUp);
  }

  /**
   * `cleanupAttempt`: a previous run scaled the build down and was retrying its cleanup. Lean
   * undeploys scale down only for the cleanup Job: without one, deleting the Deployment takes
   * its pods down as well.
   */
  async function undeploy(cleanupAttempt?: number): Promise<void> {
    if (cleanupAttempt === undefined) setStatus('undeploying');
    if (cleanupAttempt === undefined && !leanUndeploy) {
      await steps.scaleBuild(build.name, 0, stampScaled());
      await steps.deleteJobs(build.name, 'initialize');
    }
    if (!settings.noCleanupJob) {
      try {
        await runJobUntilSucceeded('cleanup', forced, cleanupAttempt);
      } catch (error) {
        // A cleanup that can never run (its kubefiles no longer render, say) must not keep
        // the build's objects forever: they go, and the history says what was skipped.
        const reason = permanentFailure(error);
        if (reason === undefined) throw error;
        state.last_error = `cleanup skipped: ${reason}`;
        log.warn('cleanup job cannot run; deleting the build without it', { build: build.name, reason });
      }
    }
    if (leanUndeploy) {
      await steps.removeBuild(build);
    } else {
      await steps.deleteBuild(build.name);
      await steps.reportUndeployed(build);
    }
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
    await steps.reportCommitStatus(build, 'failure', reason.slice(0, 140));
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
    await interruptibleSteps.deleteJobs(build.name, 'initialize');
    return deploy();
  }

  const phases: Record<Exclude<BuildPhase, 'undeploy'>, () => Promise<BuildPhase>> = {
    deploy,
    redeploy,
    initialize,
    'init-watch': resumeInitWatch,
    live,
  };
  let phase: BuildPhase = input.resume?.phase ?? 'deploy';
  try {
    while (phase !== 'undeploy') {
      phase = await runPhase(phase);
      if (phase === 'init-watch' || historyFull() || (phase === 'live' && restsWithLongHistory()))
        await continueFrom(phase);
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
  await undeploy(input.resume?.cleanupAttempt);
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
