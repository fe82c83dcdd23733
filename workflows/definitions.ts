import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { EvictionOrder } from '../common/eviction';
import type { GitHubReport } from '../common/github-reports';
import type { BuildCommand, BuildRef, BuildRepoSettings, BuildSnapshot, BuildState } from '../common/types';

// The workflows' interfaces (ids, signals, queries, updates, inputs), shared by the workflows,
// the activities, the API and tests. It imports nothing from activities/ or api/, so that
// either can import it without a circle through the workflow code.

/** The build workflow's id is derived from the name, so any process finds it without a lookup. */
export const buildWorkflowId = (name: string): string => `build-${name}`;

/** The schedules a worker ensures (worker/schedule.ts), one of each per task queue. */
export const evictionScheduleId = (config: { taskQueue: string }): string =>
  `runboat-eviction-${config.taskQueue}`;
export const orphanSweepScheduleId = (config: { taskQueue: string }): string =>
  `runboat-orphan-sweep-${config.taskQueue}`;
export const webhookRedeliveryScheduleId = (config: { taskQueue: string }): string =>
  `runboat-webhook-redelivery-${config.taskQueue}`;

export const startSignal = defineSignal('start');
export const stopSignal = defineSignal('stop');
export const resetSignal = defineSignal('reset');
export const undeploySignal = defineSignal('undeploy');

export const commandSignals: Record<BuildCommand, ReturnType<typeof defineSignal>> = {
  start: startSignal,
  stop: stopSignal,
  reset: resetSignal,
  undeploy: undeploySignal,
};

/**
 * A command that can be refused: the validator rejects it (nothing recorded in the history)
 * with an ApplicationFailure of one of `CommandRefusal`'s types. The signals above carry the
 * same commands when no worker is there to validate an update; Temporal keeps them until one is.
 */
export const commandUpdate = defineUpdate<void, [BuildCommand]>('command');

export const CommandRefusal = {
  /** Nothing to do: the API answers as if done. */
  noOp: 'CommandIsNoOp',
  /** Cannot be done now: the API answers 409. */
  notPossible: 'CommandNotPossible',
} as const;

/** A person opened the build (wake handler, `?live`, the UI's links): postpones the idle stop. */
export const visitedSignal = defineSignal('visited');

/**
 * Undeploy without the cleanup Job (an admin's way out of a cleanup that keeps failing): the
 * reason travels in the signal, so it stays in the build's history.
 */
export const forceUndeploySignal = defineSignal<[reason: string]>('forceUndeploy');

export const buildStateQuery = defineQuery<BuildSnapshot>('buildState');

/**
 * Eviction's stop and undeploy (common/eviction.ts `evict`): taken only while the build is in
 * the state the order was decided from; otherwise refused (nothing recorded in the history) with
 * an ApplicationFailure of type `EvictionOrderRefused` whose details hold the build's snapshot.
 */
export const evictUpdate = defineUpdate<void, [EvictionOrder]>('evict');
export const EVICTION_ORDER_REFUSED = 'EvictionOrderRefused';

/** Settings a build reads once, at start; they come from the worker's configuration. */
export interface LifecycleSettings {
  maxInitializing: number;
  initTimeoutSeconds: number;
  noCleanupJob: boolean;
  /** History events after which the workflow continues as new (default 2000; tests lower it). */
  historyLimit?: number;
  /** Stop a started build after this many seconds without a visit (RUNBOAT_AUTO_STOP_AFTER). */
  autoStopAfterSeconds?: number;
}

/**
 * Where the workflow is in the lifecycle of SPEC §3. `init-watch`: its init Job started and its
 * slot held, the run continued as new while waiting for the Job.
 */
export type BuildPhase = 'deploy' | 'redeploy' | 'initialize' | 'init-watch' | 'live' | 'undeploy';

export interface BuildWorkflowInput {
  build: BuildRef;
  settings: LifecycleSettings;
  /**
   * The repo entry the build was created with; its kubefiles are rendered with it for life.
   * Absent in builds started by release v1, which render with the worker's RUNBOAT_REPOS.
   */
  repo?: BuildRepoSettings;
  /** Carried over by continue-as-new. */
  resume?: {
    state: BuildState;
    phase: BuildPhase;
    commands: BuildCommand[];
    /** When the running init Job times out (workflow time, ms): the timeout is not restarted. */
    initDeadline?: number;
    /** The running init Job's attempt, when the run that started it named it (lean-history). */
    initAttempt?: string;
    /** The transition under way made its changes: the next run only waits for its replicas. */
    transitionApplied?: boolean;
    /** The undeploy's cleanup Job attempts so far: the next run goes on with their backoff. */
    cleanupAttempt?: number;
    /** Someone waiting for the build to be started: the next run times the rest of the wait. */
    readyWait?: ReadyWait;
  };
}

/**
 * Someone waiting for a build to be started: since when (workflow time, ms), and after what they
 * asked for: a new build (a webhook), a reset (or a failed build started again), a stopped
 * build's start (a visit, the button, the API).
 */
export interface ReadyWait {
  since: number;
  request: 'new' | 'reset' | 'start';
}

/** The build workflow's signature, so that the API starts it without importing workflow code. */
export type BuildWorkflow = (input: BuildWorkflowInput) => Promise<void>;

// The init-slots coordinator (workflows/init-slots.ts): a global semaphore of init slots.

/** One coordinator per task queue, so that deployments sharing a Temporal namespace stay apart. */
export const initSlotsWorkflowId = (taskQueue: string): string => `runboat-init-slots-${taskQueue}`;

export interface SlotRequest {
  workflowId: string;
  /** The configured `max_initializing`; the newest request's value applies. */
  capacity: number;
  /**
   * Names this request: its grant carries it back, and the build takes only the grant of its
   * latest request (a grant of a request it has since withdrawn, after a reset, is stale).
   */
  token?: string;
}

export const requestSlotSignal = defineSignal<[SlotRequest]>('requestInitSlot');
export const releaseSlotSignal = defineSignal<[string]>('releaseInitSlot');
/** Sent by the coordinator to a build workflow, with the token of the request it grants. */
export const slotGrantedSignal = defineSignal<[token?: string]>('initSlotGranted');

export interface InitSlots {
  capacity: number;
  holders: string[];
  waiting: string[];
  /** The token of each holder's and waiting build's request (absent: requests without one). */
  tokens?: Record<string, string>;
}
export const initSlotsQuery = defineQuery<InitSlots>('initSlots');

/** The coordinator's signature, for `signalWithStart` without importing the workflow code. */
export type InitSlotsWorkflow = (initial: InitSlots) => Promise<void>;

// The GitHub reporter (workflows/github-reports.ts): every commit status and deployment status
// goes to GitHub through it, newest first per build, spaced, and held while GitHub refuses.

/** One reporter per task queue, as the init-slots coordinator. */
export const githubReportsWorkflowId = (taskQueue: string): string => `runboat-github-reports-${taskQueue}`;

export const githubReportsSignal = defineSignal<[GitHubReport[]]>('githubReports');

export interface GitHubReports {
  /** Reports not delivered yet, oldest request first; at most one per build and target. */
  queued: GitHubReport[];
  /** GitHub's rate-limit refusals in a row: each wait is longer than the one before. */
  refusals: number;
  /** Reports GitHub failed on (5xx, network), by report key: how many times, and when to retry. */
  retries?: Record<string, { failures: number; at: number }>;
  /** GitHub asked for no request before this time (ms since the epoch). */
  waitingUntil?: number;
  /** History events after which the reporter continues as new (default 500; tests lower it). */
  historyLimit?: number;
  /** Reports never delivered since the reporter started (GitHub failed on them, or no room). */
  givenUp?: number;
}
/** The whole queue, in the order it goes to GitHub. */
export const githubReportsQuery = defineQuery<
  Omit<GitHubReports, 'waitingUntil'> & { waitingUntil: string | null }
>('githubReports');

/** What /metrics shows of the reporter, whatever the length of its queue. */
export interface GitHubReportsCounts {
  /** Reports queued, by target. */
  statuses: number;
  deployments: number;
  /** GitHub asked for no request before this time. */
  waitingUntil: string | null;
  givenUp: number;
}
export const githubReportsCountsQuery = defineQuery<GitHubReportsCounts>('githubReportsCounts');

/** The reporter's signature, for `signalWithStart` without importing the workflow code. */
export type GitHubReportsWorkflow = (initial: GitHubReports) => Promise<void>;
