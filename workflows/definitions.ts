import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { BuildRef, BuildState, BuildCommand } from '../common/types';

// The build workflow's interface, shared by the workflow, the API and tests.

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

export const buildStateQuery = defineQuery<BuildState>('buildState');

/** Settings a build reads once, at start; they come from the worker's configuration. */
export interface LifecycleSettings {
  maxInitializing: number;
  initTimeoutSeconds: number;
  noCleanupJob: boolean;
}

/** Where the workflow is in the lifecycle of SPEC §3. */
export type BuildPhase = 'deploy' | 'redeploy' | 'initialize' | 'live' | 'undeploy';

export interface BuildWorkflowInput {
  build: BuildRef;
  settings: LifecycleSettings;
  /** Carried over by continue-as-new. */
  resume?: { state: BuildState; phase: BuildPhase; commands: BuildCommand[] };
}
