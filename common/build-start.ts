import type { WorkflowStartOptions } from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import { buildSearchAttributes } from './search-attributes';
import type { Config } from './config';
import type { BuildRef, BuildRepoSettings, BuildState } from './types';
import {
  buildWorkflowId,
  type BuildPhase,
  type BuildWorkflow,
  type LifecycleSettings,
} from '../workflows/definitions';

// How a build's workflow is started: by the API for a new build (a webhook, a trigger), and by
// the orphan sweep for a build found deployed with no workflow (adopted from runboat).

export function lifecycleSettings(config: Config): LifecycleSettings {
  return {
    maxInitializing: config.maxInitializing,
    initTimeoutSeconds: config.initTimeoutSeconds,
    noCleanupJob: config.noCleanupJob,
    autoStopAfterSeconds: config.autoStopAfterSeconds,
  };
}

/** A new build's search attributes, given when its workflow starts. */
export function startSearchAttributes(build: BuildRef): SearchAttributePair[] {
  const now = new Date();
  return buildSearchAttributes(
    {
      ...build,
      status: 'initializing',
      init_status: 'todo',
      created: now.toISOString(),
      last_scaled: null,
      last_error: null,
    },
    now,
  );
}

/** A new build's workflow; an existing one (a redelivered webhook) is kept as it is. */
export function newBuildStart(
  config: Config,
  build: BuildRef,
  repo: BuildRepoSettings,
): WorkflowStartOptions<BuildWorkflow> {
  return {
    workflowId: buildWorkflowId(build.name),
    taskQueue: config.taskQueue,
    args: [{ build, settings: lifecycleSettings(config), repo }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    // Listable (and counted by eviction) from the start, not from its first workflow task. The
    // workflow upserts the same attributes with its exact start time on its first task; an
    // existing build (USE_EXISTING) keeps its own.
    typedSearchAttributes: startSearchAttributes(build),
  };
}

/**
 * The workflow of a build that is deployed already, taken over in `state` at `phase` as a run
 * continued as new would be (its objects made, any transition under way applied). Never over a
 * workflow the build has or had: its history says more than its objects do.
 */
export function adoptedBuildStart(
  config: Config,
  state: BuildState,
  phase: BuildPhase,
  /** Absent for a repo or branch no longer configured: the worker's RUNBOAT_REPOS then render. */
  repo: BuildRepoSettings | undefined,
): WorkflowStartOptions<BuildWorkflow> {
  const build: BuildRef = { name: state.name, slug: state.slug, commit: state.commit };
  return {
    workflowId: buildWorkflowId(build.name),
    taskQueue: config.taskQueue,
    args: [
      {
        build,
        settings: lifecycleSettings(config),
        ...(repo ? { repo } : {}),
        resume: { state, phase, commands: [], transitionApplied: true },
      },
    ],
    workflowIdConflictPolicy: 'FAIL',
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
    typedSearchAttributes: buildSearchAttributes(state, new Date()),
  };
}
