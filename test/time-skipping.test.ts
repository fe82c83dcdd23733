import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import {
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import {
  ApplicationFailure,
  CancelledFailure,
  SearchAttributeType,
  type Payload,
  type PayloadCodec,
} from '@temporalio/common';
import type { SearchAttributeKey } from '@temporalio/common/lib/search-attributes';
import { tsToMs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterEach, beforeEach, expect, inject, it, vi } from 'vitest';
import { transitionActivities, type BuildActivities } from '../activities';
import { buildRef } from '../common/build';
import { searchAttributes } from '../common/search-attributes';
import type { BuildCommand, BuildRepoSettings, BuildSnapshot, JobKind, JobOutcome } from '../common/types';
import { binary } from '../scripts/paths';
import type { buildWorkflow } from '../workflows/build';
import {
  buildStateQuery,
  CommandRefusal,
  commandUpdate,
  forceUndeploySignal,
  startSignal,
  stopSignal,
  undeploySignal,
  visitedSignal,
  type BuildWorkflowInput,
  type LifecycleSettings,
} from '../workflows/definitions';
import { slotGrantedSignal } from '../workflows/definitions';
import { answeredQuery, consistently, replayOnTodaysCode, runHistories, waitFor } from './helpers';

// The build workflow's timers (init timeout, cleanup backoff) on Temporal's time-skipping test
// server, with stubbed activities: hours of workflow time pass in seconds, and nothing touches
// Kubernetes. Tests that need the real server's behaviour (refused updates leaving no history,
// cancelling activities that complete at that moment) run on the dev server the same way.

const { EventType, IndexedValueType } = temporal.api.enums.v1;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

let env: TestWorkflowEnvironment;

beforeEach(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: binary('temporal-test-server') } },
  });
  // The test server rejects upserts of unknown search attributes ("search attribute
  // RunboatCommit is not defined"), failing every workflow task: register the build's.
  const indexedType: Record<string, temporal.api.enums.v1.IndexedValueType> = {
    [SearchAttributeType.KEYWORD]: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    [SearchAttributeType.INT]: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    [SearchAttributeType.DATETIME]: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  };
  await env.connection.operatorService.addSearchAttributes({
    namespace: 'default',
    searchAttributes: Object.fromEntries(
      Object.values(searchAttributes).map((key) => [key.name, indexedType[key.type]]),
    ),
  });
});

afterEach(async () => {
  await env?.teardown();
});

const build = buildRef({ repo: 'oca/x', target_branch: '16.0', pr: null, git_commit: 'a'.repeat(40) });
/** The repo settings the build was created with: every render gets them, in every run. */
const repo: BuildRepoSettings = { image: 'ghcr.io/oca/ci:16.0', env: {}, template_vars: {} };

/** Resolves never: heartbeats until the workflow cancels the activity, then rejects. */
async function untilCancelled(onCancel?: () => void): Promise<never> {
  const context = Context.current();
  context.heartbeat();
  const beat = setInterval(() => context.heartbeat(), 200);
  try {
    return await context.cancelled;
  } catch (error) {
    onCancel?.();
    throw error;
  } finally {
    clearInterval(beat);
  }
}

type Waits = {
  waitForJob: (name: string, kind: JobKind) => Promise<JobOutcome>;
  waitForReadyReplicas: (name: string, replicas: number) => Promise<void>;
};

/** Activities that record their calls; the two watches behave as each test says. */
function stubActivities(waits: Partial<Waits> = {}) {
  const steps = {
    // The init slot coordinator, played here: every request is granted at once.
    requestInitSlot: vi.fn<BuildActivities['requestInitSlot']>(async (workflowId) => {
      await Context.current().client.workflow.getHandle(workflowId).signal(slotGrantedSignal);
    }),
    releaseInitSlot: vi.fn<BuildActivities['releaseInitSlot']>(async () => undefined),
    evictionPlan: vi.fn<BuildActivities['evictionPlan']>(async () => ({ stop: [], undeploy: [] })),
    evict: vi.fn<BuildActivities['evict']>(async () => ({ stop: [], undeploy: [] })),
    endedWorkflows: vi.fn<BuildActivities['endedWorkflows']>(async () => []),
    sweepOrphans: vi.fn<BuildActivities['sweepOrphans']>(async () => ({ builds: [], objects: 0 })),
    reportCommitStatus: vi.fn<BuildActivities['reportCommitStatus']>(async () => undefined),
    reportUndeployed: vi.fn<BuildActivities['reportUndeployed']>(async () => undefined),
    deliverGitHubReports: vi.fn<BuildActivities['deliverGitHubReports']>(async (reports) => ({
      done: reports.length,
    })),
    redeliverFailedWebhooks: vi.fn<BuildActivities['redeliverFailedWebhooks']>(async () => ({
      listedFrom: '',
      listedTo: '',
      listed: 0,
      redelivered: 0,
      refused: 0,
    })),
    applyKubefiles: vi.fn<BuildActivities['applyKubefiles']>(async () => undefined),
    scaleBuild: vi.fn<BuildActivities['scaleBuild']>(async () => undefined),
    setInitStatus: vi.fn<BuildActivities['setInitStatus']>(async () => undefined),
    deleteJobs: vi.fn<BuildActivities['deleteJobs']>(async () => undefined),
    keepInitLog: vi.fn<BuildActivities['keepInitLog']>(async () => undefined),
    deleteBuild: vi.fn<BuildActivities['deleteBuild']>(async () => undefined),
    waitForJob: vi.fn<BuildActivities['waitForJob']>(
      waits.waitForJob ?? (async () => ({ succeeded: true }) as const),
    ),
    waitForReadyReplicas: vi.fn<BuildActivities['waitForReadyReplicas']>(
      waits.waitForReadyReplicas ?? (async () => undefined),
    ),
  };
  // Transitions are made of the recorded steps, as in the worker.
  return { ...steps, ...transitionActivities(steps) } satisfies BuildActivities;
}

type Stubs = ReturnType<typeof stubActivities>;
type BuildHandle = WorkflowHandleWithFirstExecutionRunId<typeof buildWorkflow>;

/**
 * Runs a worker with `activities` on its own task queue while `test` drives one build workflow,
 * on the time-skipping server, or on the dev server of the test run when `on` says so.
 */
async function withBuild(
  activities: Stubs,
  settings: LifecycleSettings,
  test: (handle: BuildHandle) => Promise<void>,
  on: 'time-skipping' | 'dev-server' = 'time-skipping',
  payloadCodecs: PayloadCodec[] = [],
): Promise<void> {
  const server =
    on === 'dev-server'
      ? await TestWorkflowEnvironment.createFromExistingServer({ address: inject('temporalAddress') })
      : env;
  try {
    await runBuild(server, activities, settings, test, payloadCodecs);
  } finally {
    if (server !== env) await server.teardown();
  }
}

async function runBuild(
  env: TestWorkflowEnvironment,
  activities: Stubs,
  settings: LifecycleSettings,
  test: (handle: BuildHandle) => Promise<void>,
  payloadCodecs: PayloadCodec[],
): Promise<void> {
  const taskQueue = `time-skipping-${randomBytes(4).toString('hex')}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: path.resolve(__dirname, '..', 'workflows'),
    activities,
    // Heartbeats (and the cancellations they bring back) flow at once, not every 24 s.
    maxHeartbeatThrottleInterval: '100 milliseconds',
    dataConverter: { payloadCodecs },
  });
  await worker.runUntil(async () => {
    const handle = await env.client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
      args: [{ build, settings, repo }],
      taskQueue,
      workflowId: `build-${build.name}-${taskQueue}`,
    });
    try {
      await test(handle);
    } finally {
      await handle.terminate('test over').catch(() => undefined);
    }
  });
}

const state = (handle: WorkflowHandle) => answeredQuery(handle, buildStateQuery);

/**
 * One of the build's search attributes, as `describe` gives it: the server alone answers, where
 * a query goes to the worker (see `untilStatus`).
 */
async function attribute<T extends SearchAttributeType>(handle: WorkflowHandle, key: SearchAttributeKey<T>) {
  return (await handle.describe()).typedSearchAttributes.get(key);
}

/**
 * Waits until the build has `status`, as its search attribute says (`attribute`). On the
 * time-skipping server, the status query polled while a build ran its slot request (a local
 * activity) was now and then never answered, and the build's run stalled with it, no new task
 * and time no longer skipping, until the server closed the connections over their keepalive
 * pings 90 s later (CI, twice; about one test in 15 beside three CPU hogs; how the test server
 * loses them was not pinned down: it answers queries as legacy query tasks, compare
 * temporalio/sdk-java#1428). The query is asked once the build is there, in `status`.
 */
async function untilStatus(handle: WorkflowHandle, status: BuildSnapshot['status']): Promise<BuildSnapshot> {
  await waitFor(
    `status ${status}`,
    async () => (await attribute(handle, searchAttributes.status)) === status,
  );
  return state(handle);
}

/**
 * Waits until the build's current run has no workflow task under way. A build coming to rest
 * continues as new in the task that stops it, and its status can read 'stopped' before that
 * task is done: the next command then goes to the run that is closing (the test server's
 * continue-as-new is not atomic, temporalio/sdk-java#1538).
 */
async function untilSettled(handle: BuildHandle): Promise<void> {
  await waitFor('the build settled in its current run', async () => {
    const { runId, status } = await handle.describe();
    if (status.name !== 'RUNNING') return false;
    const events = (await handle.client.getHandle(handle.workflowId, runId).fetchHistory()).events ?? [];
    const count = (type: number) => events.filter((e) => e.eventType === type).length;
    const ended =
      count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) +
      count(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) +
      count(EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT);
    return ended === count(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
  });
}

/** Every event of the build's life: its runs' histories, first to last (it continues at rest). */
async function history(handle: BuildHandle): Promise<HistoryEvent[]> {
  return (await runHistories(handle.client, handle.workflowId, handle.firstExecutionRunId)).flat();
}

const timerSeconds = (event: HistoryEvent) =>
  tsToMs(event.timerStartedEventAttributes?.startToFireTimeout) / 1000;

const defaults: LifecycleSettings = { maxInitializing: 1, initTimeoutSeconds: 1200, noCleanupJob: false };

it('fails a build whose init job outlives the init timeout, and deletes the job', async () => {
  let watchCancelled = false;
  const activities = stubActivities({
    async waitForJob() {
      // The test server stops skipping time while an activity attempt runs: each attempt holds a
      // time lock until it ends. This attempt never ends by itself, so it gives its lock back
      // while it runs (and takes it again before it ends, keeping the count balanced).
      const testService = env.connection.testService!;
      await testService.unlockTimeSkipping({});
      try {
        return await untilCancelled(() => {
          watchCancelled = true;
        });
      } finally {
        await testService.lockTimeSkipping({});
      }
    },
  });
  await withBuild(activities, defaults, async (handle) => {
    await waitFor('the init job watch', async () => activities.waitForJob.mock.calls.length > 0);
    expect((await state(handle)).init_status).toBe('started');

    // Twenty minutes of workflow time in 20 s steps, each short of the watch's 30 s heartbeat
    // timeout, letting a heartbeat land between steps: the watch stays one live attempt.
    const start = await env.currentTimeMs();
    while (!watchCancelled && (await env.currentTimeMs()) - start < 1_300_000) {
      await env.sleep('20 seconds');
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    const failed = await untilStatus(handle, 'failed');
    expect(failed.init_status).toBe('failed');
    expect(failed.last_error).toContain('timed out after 1200 s');

    const name = build.name;
    expect(activities.waitForJob.mock.calls).toEqual([[name, 'initialize']]);
    expect(activities.setInitStatus).toHaveBeenLastCalledWith(name, 'failed');
    // The timed-out job is deleted once the watch has given up on it.
    const watchOrder = activities.waitForJob.mock.invocationCallOrder[0];
    const deletesAfterWatch = activities.deleteJobs.mock.calls.filter(
      (_, i) => activities.deleteJobs.mock.invocationCallOrder[i] > watchOrder,
    );
    expect(deletesAfterWatch).toEqual([[name, 'initialize']]);
    expect(activities.keepInitLog).toHaveBeenCalledWith(name);
    expect(activities.scaleBuild.mock.calls.filter(([, replicas]) => replicas === 1)).toEqual([]);
    expect(watchCancelled).toBe(true);

    // The reason is in the history: the 1200 s timer started and fired.
    const events = await history(handle);
    const started = events.filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED);
    expect(started.map(timerSeconds)).toEqual([1200]);
    const fired = events.filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_FIRED);
    expect(fired.map((e) => e.timerFiredEventAttributes?.timerId)).toEqual([
      started[0].timerStartedEventAttributes?.timerId,
    ]);
  });
});

it('retries a failing cleanup job with exponential backoff before deleting the build', async () => {
  let cleanupAttempts = 0;
  const seen: BuildSnapshot[] = [];
  const activities = stubActivities({
    async waitForJob(_name, kind) {
      if (kind === 'initialize') return { succeeded: true };
      cleanupAttempts++;
      if (cleanupAttempts > 1) {
        const { workflowId } = Context.current().info.workflowExecution!;
        seen.push(
          await answeredQuery(Context.current().client.workflow.getHandle(workflowId), buildStateQuery),
        );
      }
      return cleanupAttempts <= 3 ? { succeeded: false, reason: 'dropdb failed' } : { succeeded: true };
    },
  });
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.signal(undeploySignal);
    await handle.result();

    const cleanupWaits = activities.waitForJob.mock.calls
      .map(([, kind], i) => ({ kind, order: activities.waitForJob.mock.invocationCallOrder[i] }))
      .filter(({ kind }) => kind === 'cleanup');
    expect(cleanupWaits).toHaveLength(4);
    expect(activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'cleanup')).toHaveLength(4);
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    expect(activities.deleteBuild.mock.invocationCallOrder[0]).toBeGreaterThan(cleanupWaits[3].order);
    // Each attempt's Job is marked with an attempt of its own, which a retry of its activity
    // keeps; the first attempt scaled the build down.
    const marks = activities.applyKubefiles.mock.calls
      .filter(([, mode]) => mode === 'cleanup')
      .map(([, , , options]) => options?.jobAttempt);
    expect(new Set(marks).size).toBe(4);
    expect(activities.deleteJobs.mock.calls.filter(([, kind]) => kind === 'cleanup')).toEqual(
      marks.map((mark) => [build.name, 'cleanup', mark]),
    );
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1, 0]);

    // What the build page showed while the cleanup kept failing.
    expect(seen.map((s) => s.status)).toEqual(['undeploying', 'undeploying', 'undeploying']);
    expect(seen.map((s) => s.last_error)).toEqual([
      'cleanup job failed (attempt 1): dropdb failed',
      'cleanup job failed (attempt 2): dropdb failed',
      'cleanup job failed (attempt 3): dropdb failed',
    ]);

    // Between attempts, the workflow slept on timers doubling from one minute.
    const events = await history(handle);
    const steps = events.flatMap((e) => {
      if (e.eventType === EventType.EVENT_TYPE_TIMER_STARTED) return [`timer ${timerSeconds(e)}s`];
      const type = e.activityTaskScheduledEventAttributes?.activityType?.name;
      return type === 'runInitJob' || type === 'runCleanupJob' || type === 'removeBuild' ? [type] : [];
    });
    expect(steps).toEqual([
      'runInitJob', // started and watched, raced against its timeout:
      'timer 1200s',
      'runCleanupJob',
      'timer 60s',
      'runCleanupJob',
      'timer 120s',
      'runCleanupJob',
      'timer 240s',
      'runCleanupJob',
      'removeBuild',
    ]);
    expect(events.filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_FIRED)).toHaveLength(3);
  });
});

it('undeploys without a cleanup job when no_cleanup_job is set', async () => {
  const activities = stubActivities();
  await withBuild(activities, { ...defaults, noCleanupJob: true }, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.signal(undeploySignal);
    await handle.result();

    expect(activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'cleanup')).toEqual([]);
    expect(activities.waitForJob.mock.calls.filter(([, kind]) => kind === 'cleanup')).toEqual([]);
    expect(activities.deleteJobs).not.toHaveBeenCalledWith(build.name, 'cleanup');
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    // Deleted directly: deleting the Deployment takes its pods down, no scaling first.
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1]);
  });
});

it('stops a build that is still starting', async () => {
  let startWatchCancelled = false;
  const activities = stubActivities({
    async waitForReadyReplicas(_name, replicas) {
      if (replicas === 1) {
        await untilCancelled(() => {
          startWatchCancelled = true;
        });
      }
    },
  });
  await withBuild(activities, defaults, async (handle) => {
    await waitFor('the start watch', async () =>
      activities.waitForReadyReplicas.mock.calls.some(([, replicas]) => replicas === 1),
    );
    expect((await state(handle)).status).toBe('starting');
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1]);

    await handle.signal(stopSignal);
    const stopped = await untilStatus(handle, 'stopped');
    expect(stopped.init_status).toBe('succeeded');
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1, 0]);
    expect(activities.applyKubefiles).toHaveBeenLastCalledWith(build, 'stop', repo);
    expect(activities.waitForReadyReplicas).toHaveBeenLastCalledWith(build.name, 0);
    await waitFor('the start watch to be cancelled', async () => startWatchCancelled);
  });
});

it('re-runs initialization when a failed build is started', async () => {
  let initAttempts = 0;
  const activities = stubActivities({
    async waitForJob() {
      initAttempts++;
      return initAttempts === 1 ? { succeeded: false, reason: 'odoo -i failed' } : { succeeded: true };
    },
  });
  await withBuild(
    activities,
    defaults,
    async (handle) => {
      const failed = await untilStatus(handle, 'failed');
      expect(failed).toMatchObject({ init_status: 'failed', last_error: 'odoo -i failed' });
      expect(activities.setInitStatus).toHaveBeenLastCalledWith(build.name, 'failed');

      await handle.signal(startSignal);
      const started = await untilStatus(handle, 'started');
      expect(started).toMatchObject({ init_status: 'succeeded', last_error: null });
      const initApplies = activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'initialize');
      expect(initApplies).toEqual([
        [build, 'initialize', repo, { jobAttempt: expect.any(String) }],
        [build, 'initialize', repo, { jobAttempt: expect.any(String) }],
      ]);
      // Each init is an attempt of its own: the second one's delete spares nothing of the first.
      expect(initApplies[0][3]).not.toEqual(initApplies[1][3]);
      expect(activities.waitForJob.mock.calls).toEqual([
        [build.name, 'initialize'],
        [build.name, 'initialize'],
      ]);
    },
    'dev-server',
  );
});

it('continues as new with its state and every pending command, none applied twice', async () => {
  const activities = stubActivities();
  // On the dev server: a command interrupts the transition before it, cancelling an activity
  // that may be completing at that moment, which the time-skipping server cannot take.
  await withBuild(
    activities,
    { ...defaults, historyLimit: 60 },
    async (handle) => {
      const started = await untilStatus(handle, 'started');
      const firstRunId = (await handle.describe()).runId;
      // A burst of commands that outlasts several runs of 60 events. A start arriving while the
      // stop before it is still pending cancels it: how many scale calls there are depends on
      // timing, but they alternate (no command acted on twice) and end started.
      for (let i = 0; i < 20; i++) {
        await handle.signal(stopSignal);
        await handle.signal(startSignal);
      }
      const last = await waitFor('every command taken', async () => {
        const current = await state(handle);
        return current.pending_commands.length === 0 && current.status === 'started' && current;
      });
      expect(last.created).toBe(started.created);
      // A transition interrupted and then resumed is made again (idempotent): same replicas
      // twice in a row. Besides that, starts and stops alternate, and the last is a start.
      const replicas = activities.scaleBuild.mock.calls
        .map(([, count]) => count)
        .filter((count, i, all) => i === 0 || count !== all[i - 1]);
      expect(replicas).toEqual(Array.from({ length: replicas.length }, (_, i) => (i % 2 === 0 ? 1 : 0)));
      expect(replicas.length % 2).toBe(1);
      expect((await handle.describe()).runId).not.toBe(firstRunId);
      // Nothing was started again: one deploy and one init, whatever the number of runs.
      expect(activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'deployment')).toHaveLength(
        1,
      );
      expect(activities.waitForJob).toHaveBeenCalledTimes(1);
      // The repo settings the build was created with reach every render, in every run.
      expect(activities.applyKubefiles.mock.calls.map(([, , settings]) => settings)).toEqual(
        activities.applyKubefiles.mock.calls.map(() => repo),
      );
    },
    'dev-server',
  );
});

/** Resolves with `done`, or rejects once the workflow cancels the activity (heartbeating till then). */
async function untilDoneOrCancelled(done: Promise<void>): Promise<void> {
  const context = Context.current();
  const beat = setInterval(() => context.heartbeat(), 100);
  try {
    await Promise.race([done, context.cancelled]);
  } finally {
    clearInterval(beat);
  }
}

/** 'accepted', or the type of the refusal the build answered `command` with. */
function commandAnswer(handle: BuildHandle, command: BuildCommand): Promise<string> {
  return handle.executeUpdate(commandUpdate, { args: [command] }).then(
    () => 'accepted',
    (error: unknown) => {
      const cause = error instanceof WorkflowUpdateFailedError ? error.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.type) return cause.type;
      throw error;
    },
  );
}

/** Replays each of `runs` on today's workflow code (the paths they took are deterministic). */
async function replayEachRun(runs: HistoryEvent[][], replayName: string): Promise<void> {
  for (const events of runs) await replayOnTodaysCode({ events }, replayName);
}

it('continues as new while waiting for its init job under a flood of signals, holding one job and its slot', async () => {
  let finishInit!: () => void;
  const initFinished = new Promise<void>((resolve) => (finishInit = resolve));
  const activities = stubActivities({
    async waitForJob() {
      await untilDoneOrCancelled(initFinished);
      return { succeeded: true };
    },
  });
  const historyLimit = 100;
  await withBuild(
    activities,
    { ...defaults, historyLimit },
    async (handle) => {
      await waitFor('the init job watch', async () => activities.waitForJob.mock.calls.length > 0);
      const firstRunId = (await handle.describe()).runId;
      // The no-worker path: each command is a signal, recorded even when it changes nothing.
      // Signals go on until a third run holds the watch: how many that takes depends on how
      // many of them the server batches into each workflow task, which depends on load.
      const runIds = new Set([firstRunId]);
      for (let sent = 0; runIds.size < 3; sent++) {
        if (sent === 3_000) throw new Error(`${runIds.size} runs after ${sent} signals`);
        await handle.signal(sent % 2 === 0 ? startSignal : stopSignal);
        if (sent % 10 === 9) runIds.add((await handle.describe()).runId);
      }
      finishInit();
      await untilStatus(handle, 'started');

      const runs = await runHistories(handle.client, handle.workflowId, firstRunId);
      const lengths = runs.map((events) => events.length);
      expect(runs.length).toBeGreaterThan(2);
      // A run ends at the first workflow task past the limit; that task takes what signals
      // arrived meanwhile, and the run's close adds a few events (measured: 115 to 139).
      for (const length of lengths)
        expect(length, `run lengths ${lengths.join(', ')}`).toBeLessThan(historyLimit * 2);
      // One init job (every run keeps the Job of the same attempt), watched across the runs, and
      // its slot asked for once and handed back once.
      const initAttempts = activities.applyKubefiles.mock.calls
        .filter(([, mode]) => mode === 'initialize')
        .map(([, , , options]) => options?.jobAttempt);
      expect(new Set(initAttempts).size, `attempts ${initAttempts.join(', ')}`).toBe(1);
      expect(initAttempts[0]).toEqual(expect.any(String));
      expect(activities.deleteJobs.mock.calls.filter(([, kind]) => kind === 'initialize')).toEqual(
        initAttempts.map((attempt) => [build.name, 'initialize', attempt]),
      );
      expect(activities.requestInitSlot).toHaveBeenCalledTimes(1);
      // Handed back by the activity that starts the build, not by a signal of the workflow.
      const signals = runs
        .flat()
        .filter((e) => e.eventType === EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED);
      expect(signals).toEqual([]);
      const workflowId = handle.workflowId;
      expect(activities.releaseInitSlot.mock.calls).toEqual([[workflowId]]);
      // Each run goes on timing the build's first wait from its creation, not from its own start.
      for (const events of runs.slice(1)) {
        const [payload] = events[0].workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
        const input = JSON.parse(Buffer.from(payload?.data ?? []).toString()) as BuildWorkflowInput;
        expect(input.resume?.readyWait).toEqual({
          since: Date.parse(input.resume!.state.created),
          request: 'new',
        });
      }
      // Each run replays on today's code (the new paths are deterministic).
      await replayEachRun(runs, 'flood');
    },
    'dev-server',
  );
});

it('continues as new once stopped, so that its next command replays a few events', async () => {
  const activities = stubActivities();
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    const firstRunId = (await handle.describe()).runId;
    await handle.executeUpdate(commandUpdate, { args: ['stop'] });
    // Queried only once the rest run's first workflow task completed: the test server answers a
    // query that comes during a task with one more task, three more events in the history.
    const secondRunId = await waitFor('a run at rest', async () => {
      const { runId } = await handle.describe();
      if (runId === firstRunId) return false;
      const events = (await handle.client.getHandle(handle.workflowId, runId).fetchHistory()).events ?? [];
      const settled = events.some((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
      return settled && (await state(handle)).status === 'stopped' && runId;
    });
    const atRest = await state(handle);
    const [lifeRun, restRun] = await runHistories(handle.client, handle.workflowId, firstRunId);
    expect(lifeRun.length).toBeGreaterThan(20);
    // Started (with the state), a workflow task, the patch's marker and its upsert.
    expect(restRun.length, restRun.map((e) => EventType[e.eventType ?? 0]).join(', ')).toBeLessThanOrEqual(8);
    // Still the same build: its status for lists, its times for eviction's order.
    const { typedSearchAttributes } = await handle.describe();
    expect(typedSearchAttributes.get(searchAttributes.status)).toBe('stopped');
    expect(atRest).toMatchObject({ status: 'stopped', init_status: 'succeeded', pending_commands: [] });

    // A run at rest takes commands; the next rest continues again, a short rest run does not.
    await handle.executeUpdate(commandUpdate, { args: ['start'] });
    const restarted = await untilStatus(handle, 'started');
    expect(restarted.created).toBe(atRest.created);
    expect((await handle.describe()).runId).toBe(secondRunId);
    await handle.executeUpdate(commandUpdate, { args: ['stop'] });
    await waitFor('a third run at rest', async () => {
      const { runId } = await handle.describe();
      return runId !== secondRunId && (await state(handle)).status === 'stopped';
    });
    const runs = await runHistories(handle.client, handle.workflowId, firstRunId);
    expect(runs).toHaveLength(3);
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1, 0, 1, 0]);
    expect(activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'deployment')).toHaveLength(1);
    await replayEachRun(runs, 'at rest');
  });
});

it('takes or refuses every command sent as a build comes to rest and continues as new', async () => {
  const activities = stubActivities();
  // On the dev server: an update that arrives while the run continues as new is aborted by the
  // server as retryable, and the client sends it again to the new run.
  await withBuild(
    activities,
    defaults,
    async (handle) => {
      await untilStatus(handle, 'started');
      const answer = (command: BuildCommand) => commandAnswer(handle, command);
      // Each start a query later after its stop than the one before: early ones meet the build
      // stopping, later ones at rest or continuing as new (where depends on the machine's speed).
      const answers: string[] = [];
      for (let i = 0; i < 15; i++) {
        answers.push(await answer('stop'));
        for (let queries = 0; queries < i; queries++) await state(handle);
        answers.push(await answer('start'));
      }
      // And one start for certain once the build continued at rest.
      const before = (await handle.describe()).runId;
      answers.push(await answer('stop'));
      await waitFor('a run at rest', async () => (await handle.describe()).runId !== before);
      answers.push(await answer('start'));
      for (const a of answers) expect([...Object.values(CommandRefusal), 'accepted']).toContain(a);
      await waitFor('every command taken', async () => {
        const current = await state(handle);
        return current.pending_commands.length === 0 && current.status === 'started';
      });
      const replicas = activities.scaleBuild.mock.calls
        .map(([, count]) => count)
        .filter((count, i, all) => i === 0 || count !== all[i - 1]);
      expect(replicas).toEqual(Array.from({ length: replicas.length }, (_, i) => (i % 2 === 0 ? 1 : 0)));
    },
    'dev-server',
  );
});

it('takes a start signalled while its run continues as new at rest, with no task timing out', async () => {
  const activities = stubActivities();
  let build: BuildHandle | undefined;
  let signalled = false;
  /** The input of a run continued at rest: `resume` with the build stopped. */
  const continuesAtRest = (payload: Payload) => {
    try {
      const input = JSON.parse(Buffer.from(payload.data ?? []).toString()) as BuildWorkflowInput;
      return input.resume?.state.status === 'stopped';
    } catch {
      return false;
    }
  };
  // The worker encodes a workflow task's commands before it completes the task: holding the
  // encoding of the continue-as-new's input until a start signal is in the history makes that
  // signal meet the continue-as-new, every time.
  const holdContinueAtRest: PayloadCodec = {
    async encode(payloads) {
      if (build && !signalled && payloads.some(continuesAtRest)) {
        signalled = true;
        await build.signal(startSignal);
      }
      return payloads;
    },
    async decode(payloads) {
      return payloads;
    },
  };
  await withBuild(
    activities,
    defaults,
    async (handle) => {
      build = handle;
      await untilStatus(handle, 'started');
      await handle.executeUpdate(commandUpdate, { args: ['stop'] });
      await waitFor('the start signalled as the run continues', async () => signalled);
      await untilStatus(handle, 'started');
      const runs = await runHistories(handle.client, handle.workflowId, handle.firstExecutionRunId);
      const events = runs.flat();
      // The server refused the task's continue-as-new for the signal it had not seen, and
      // scheduled the next task at once: the build took the start in the same run.
      const failed = events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED);
      expect(failed.map((e) => e.workflowTaskFailedEventAttributes?.cause)).toEqual([
        temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND,
      ]);
      expect(runs).toHaveLength(1);
      expect(events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)).toEqual([]);
      expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1, 0, 1]);
      await replayEachRun(runs, 'signal meets continue-as-new');
    },
    'dev-server',
    [holdContinueAtRest],
  );
});

it('continues as new once failed, and a start from the short run initializes again', async () => {
  let inits = 0;
  const activities = stubActivities({
    async waitForJob() {
      return ++inits === 1 ? { succeeded: false, reason: 'module not found' } : { succeeded: true };
    },
  });
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'failed');
    await waitFor(
      'a run at rest',
      async () => (await handle.describe()).runId !== handle.firstExecutionRunId,
    );
    expect((await state(handle)).last_error).toBe('module not found');
    await handle.executeUpdate(commandUpdate, { args: ['start'] });
    await untilStatus(handle, 'started');
    expect(inits).toBe(2);
  });
});

it('continues as new while its cleanup job keeps failing, going on with the backoff', async () => {
  let cleanupAttempts = 0;
  const activities = stubActivities({
    async waitForJob(_name, kind) {
      if (kind === 'initialize') return { succeeded: true };
      return ++cleanupAttempts <= 6 ? { succeeded: false, reason: 'dropdb failed' } : { succeeded: true };
    },
  });
  // A cleanup attempt costs about 11 events (its activity, a timer, two workflow tasks): a run
  // holds two or three of them.
  await withBuild(activities, { ...defaults, historyLimit: 30 }, async (handle) => {
    await untilStatus(handle, 'started');
    const firstRunId = (await handle.describe()).runId;
    await handle.signal(undeploySignal);
    // Time is moved on by the test, not left to the client's wait for the result: with an hour of
    // backoff across runs, that wait once let no timer fire within the test's timeout (on a
    // loaded machine, the test server's connection complaining of excess pings).
    const latestRun = env.client.workflow.getHandle(handle.workflowId);
    await waitFor(
      'the cleanup attempts to end',
      async () => {
        await env.sleep('5 minutes');
        return (await latestRun.describe()).status.name === 'COMPLETED';
      },
      100_000,
    );
    await handle.result();

    const runs = await runHistories(handle.client, handle.workflowId, firstRunId);
    const input = (events: HistoryEvent[]) =>
      Buffer.from(
        events[0].workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data ?? [],
      ).toString();
    const cleanupRuns = runs.filter((events) => input(events).includes('"cleanupAttempt"'));
    expect(runs.length).toBeGreaterThan(2);
    expect(cleanupRuns.length).toBeGreaterThan(1);
    // Every attempt made once, the build scaled down once, deleted once.
    expect(activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'cleanup')).toHaveLength(7);
    expect(activities.scaleBuild.mock.calls.filter(([, replicas]) => replicas === 0)).toHaveLength(1);
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    // The backoff went on doubling from run to run, not from one minute again.
    const timers = runs
      .flat()
      .filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)
      .map(timerSeconds)
      .filter((seconds) => seconds !== defaults.initTimeoutSeconds);
    expect(timers).toEqual([60, 120, 240, 480, 960, 1920]);
    await replayEachRun(runs, 'cleanup');
  });
});

it('takes only the grant of its latest slot request, not a stale one', async () => {
  const activities = stubActivities();
  // The coordinator, played by the test: requests are recorded, not granted.
  activities.requestInitSlot.mockImplementation(async () => undefined);
  await withBuild(activities, defaults, async (handle) => {
    await waitFor('a slot request', async () => activities.requestInitSlot.mock.calls.length > 0);
    const [, , token] = activities.requestInitSlot.mock.calls[0];
    expect(token).toEqual(expect.any(String));
    // The grant of a request withdrawn since (a reset came between) admits nothing.
    await handle.signal(slotGrantedSignal, `${token}-withdrawn`);
    const initJobs = () => activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'initialize');
    // From the server, not a query (see `untilStatus`): the slot request may still be under way.
    await consistently(
      'no init job without a slot',
      async () =>
        (await attribute(handle, searchAttributes.initStatus)) === 'todo' && initJobs().length === 0,
    );
    await handle.signal(slotGrantedSignal, token);
    await untilStatus(handle, 'started');
    expect(initJobs()).toHaveLength(1);
  });
});

/** An activity failure that retrying cannot fix, as activities/index.ts classifies them. */
const refused = () =>
  ApplicationFailure.nonRetryable("Kubernetes refused the build's objects: quota exceeded", 'KubefilesError');

/** Stub activities whose objects of `refusedMode` the cluster refuses for good. */
function refusingActivities(refusedMode: Parameters<BuildActivities['applyKubefiles']>[1]): Stubs {
  const activities = stubActivities();
  activities.applyKubefiles.mockImplementation(async (_build, mode) => {
    if (mode === refusedMode) throw refused();
  });
  return activities;
}

it('leaves a build failed, with its reason, when the cluster refuses its objects for good', async () => {
  const activities = refusingActivities('start');
  await withBuild(
    activities,
    defaults,
    async (handle) => {
      const failed = await untilStatus(handle, 'failed');
      expect(failed.last_error).toContain('quota exceeded');
      // Reported right after the status changes.
      await waitFor('the failure status', async () =>
        activities.reportCommitStatus.mock.calls.some(
          ([, state, description]) => state === 'failure' && description.includes('quota exceeded'),
        ),
      );
      // Still alive: an undeploy removes everything, as for any build.
      await handle.signal(undeploySignal);
      await handle.result();
      expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    },
    'dev-server',
  );
});

it('leaves a build failed, its init not started, when its init Job is refused for good', async () => {
  const activities = refusingActivities('initialize');
  await withBuild(
    activities,
    defaults,
    async (handle) => {
      const failed = await untilStatus(handle, 'failed');
      expect(failed.last_error).toContain('quota exceeded');
      // The init status was set as the Job was to start; no Job started, it goes back.
      expect(failed.init_status).toBe('todo');
      expect(activities.waitForJob).not.toHaveBeenCalled();
      await handle.signal(undeploySignal);
      await handle.result();
    },
    'dev-server',
  );
});

it('undeploys a build whose cleanup can never run: objects deleted, the reason kept', async () => {
  const activities = stubActivities();
  activities.applyKubefiles.mockImplementation(async (_build, mode) => {
    if (mode === 'cleanup')
      throw ApplicationFailure.nonRetryable('oca/x matches no RUNBOAT_REPOS entry', 'KubefilesError');
  });
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.signal(undeploySignal);
    await handle.result();
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    expect(activities.waitForJob.mock.calls.filter(([, kind]) => kind === 'cleanup')).toEqual([]);
  });
});

it('takes a stop, then an undeploy, while a start keeps failing and retrying', async () => {
  const activities = stubActivities();
  let startAttempts = 0;
  activities.applyKubefiles.mockImplementation(async (_build, mode) => {
    if (mode === 'start' && startAttempts++ > 0) throw new Error('the apiserver is overloaded');
  });
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.executeUpdate(commandUpdate, { args: ['stop'] });
    await untilStatus(handle, 'stopped');
    await untilSettled(handle);
    await handle.executeUpdate(commandUpdate, { args: ['start'] });
    await waitFor('a failing start retried', async () => startAttempts >= 3);
    expect((await state(handle)).status).toBe('starting');

    await handle.executeUpdate(commandUpdate, { args: ['stop'] });
    await untilStatus(handle, 'stopped');
    await untilSettled(handle);
    await handle.executeUpdate(commandUpdate, { args: ['start'] });
    await waitFor('the start failing again', async () => startAttempts >= 5);
    await handle.executeUpdate(commandUpdate, { args: ['undeploy'] });
    await handle.result();
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
  });
});

it('undeploys the build of a cancelled workflow', async () => {
  const activities = stubActivities();
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.cancel();
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    expect(activities.applyKubefiles).toHaveBeenLastCalledWith(build, 'cleanup', repo, {
      jobAttempt: expect.any(String),
    });
  });
});

it('refuses commands with nothing to do, and any command but a second undeploy once undeploying', async () => {
  const activities = stubActivities({
    waitForJob: async (_name, kind) => (kind === 'initialize' ? untilCancelled() : { succeeded: true }),
  });
  // The undeploy is held until the commands sent while undeploying are answered: an undeploy
  // done first would close the workflow, aborting their updates.
  let finishUndeploy = () => {};
  const undeployHeld = new Promise<void>((resolve) => (finishUndeploy = resolve));
  activities.deleteBuild.mockImplementation(() => undeployHeld);
  await withBuild(
    activities,
    defaults,
    async (handle) => {
      await waitFor('the init job watch', async () => activities.waitForJob.mock.calls.length > 0);
      const answer = (command: BuildCommand) => commandAnswer(handle, command);
      expect(await answer('start')).toBe(CommandRefusal.noOp);
      expect(await answer('stop')).toBe(CommandRefusal.noOp);
      expect(await answer('undeploy')).toBe('accepted');
      expect(await answer('start')).toBe(CommandRefusal.notPossible);
      expect(await answer('reset')).toBe(CommandRefusal.notPossible);
      expect(await answer('undeploy')).toBe(CommandRefusal.noOp);
      finishUndeploy();
      await handle.result();
    },
    'dev-server',
  );
});

it('stops a started build nobody visited for RUNBOAT_AUTO_STOP_AFTER, each visit moving the deadline', async () => {
  const activities = stubActivities();
  await withBuild(activities, { ...defaults, autoStopAfterSeconds: 3600 }, async (handle) => {
    const started = await untilStatus(handle, 'started');
    expect(started.last_visited ?? null).toBeNull();

    await env.sleep('50 minutes');
    await handle.signal(visitedSignal);
    const visited = (await waitFor(
      'the visit recorded',
      async () => (await state(handle)).last_visited,
    )) as string;
    // Past the first deadline (an hour after the start) but within an hour of the visit: still up.
    await env.sleep('40 minutes');
    expect((await state(handle)).status).toBe('started');
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1]);

    await env.sleep('25 minutes');
    const stopped = await untilStatus(handle, 'stopped');
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1, 0]);
    expect(activities.applyKubefiles).toHaveBeenLastCalledWith(build, 'stop', repo);
    // Stopped an hour after the visit, by workflow time.
    const stoppedAt = Date.parse(stopped.last_scaled ?? '');
    expect(stoppedAt - Date.parse(visited)).toBeGreaterThanOrEqual(3_600_000);
    expect(stoppedAt - Date.parse(visited)).toBeLessThan(3_660_000);

    // The timers tell the story: the full hour from the start, then what was left after the visit.
    const timers = (await history(handle))
      .filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)
      .map(timerSeconds);
    expect(timers[1]).toBeGreaterThan(3590);
    expect(timers[1]).toBeLessThanOrEqual(3600);
    expect(timers[2]).toBeGreaterThan(2990);
    expect(timers[2]).toBeLessThan(3010);

    // The visit is searchable too.
    const described = await handle.describe();
    expect(described.typedSearchAttributes.get(searchAttributes.lastVisited)?.toISOString()).toBe(visited);

    // A stopped build waits for commands only: no idle timer while stopped.
    await env.sleep('3 hours');
    expect((await state(handle)).status).toBe('stopped');
    const timersAfter = (await history(handle)).filter(
      (e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED,
    );
    expect(timersAfter).toHaveLength(timers.length);
  });
});

it('never stops an idle build when RUNBOAT_AUTO_STOP_AFTER is unset', async () => {
  const activities = stubActivities();
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await env.sleep('2 days');
    expect((await state(handle)).status).toBe('started');
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1]);
  });
});

it('gives up a failing cleanup job when an admin forces the undeploy, keeping the reason', async () => {
  const activities = stubActivities({
    async waitForJob(_name, kind) {
      return kind === 'initialize'
        ? { succeeded: true }
        : { succeeded: false, reason: 'dropdb: no such host' };
    },
  });
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.signal(undeploySignal);
    const cleanupWaits = () =>
      activities.waitForJob.mock.calls.filter(([, kind]) => kind === 'cleanup').length;
    await waitFor('a failed cleanup attempt', async () => cleanupWaits() === 1);
    await env.sleep('61 seconds');
    // Now waiting two minutes before its third attempt: the admin gives up on it.
    await waitFor('a second failed cleanup attempt', async () => cleanupWaits() === 2);
    expect((await state(handle)).status).toBe('undeploying');
    await handle.signal(forceUndeploySignal, 'cleanup keeps failing: database host gone');
    await handle.result();

    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    expect(activities.reportUndeployed.mock.calls).toEqual([[build]]);
    const cleanups = activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'cleanup');
    expect(cleanups).toHaveLength(2);
    // The reason is in the history, as the signal's input.
    const signal = (await history(handle)).find(
      (e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'forceUndeploy',
    );
    const payload = signal?.workflowExecutionSignaledEventAttributes?.input?.payloads?.[0]?.data;
    expect(Buffer.from(payload ?? []).toString()).toContain('database host gone');
  });
});

it('undeploys a started build at once, without the cleanup job, when forced', async () => {
  const activities = stubActivities();
  await withBuild(activities, defaults, async (handle) => {
    await untilStatus(handle, 'started');
    await handle.signal(forceUndeploySignal, 'stuck');
    await handle.result();
    expect(activities.applyKubefiles.mock.calls.filter(([, mode]) => mode === 'cleanup')).toEqual([]);
    expect(activities.deleteBuild.mock.calls).toEqual([[build.name]]);
    expect(activities.scaleBuild.mock.calls.map(([, replicas]) => replicas)).toEqual([1]);
  });
});
