import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { buildRef, UnsafeCommitInfoError } from '../common/build';
import { judgeCommand } from '../common/commands';
import { captureRepoSettings, findRepoSettings, type Config } from '../common/config';
import { logger } from '../common/logger';
import { withinDeadline } from './backend';
import { capBuildsOfRef } from './per-ref-cap';
import { listBuilds, type BuildFilter } from '../common/build-list';
import { newBuildStart } from '../common/build-start';
import {
  type BuildCommand,
  type BuildRef,
  type BuildRepoSettings,
  type BuildSnapshot,
  type CommitInfo,
} from '../common/types';
import {
  buildStateQuery,
  buildWorkflowId,
  CommandRefusal,
  commandSignals,
  commandUpdate,
  forceUndeploySignal,
  type BuildWorkflow,
} from '../workflows/definitions';

// How the API (and tests) drive build workflows: always through Temporal, never Kubernetes.

export class UnsupportedBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedBuildError';
  }
}

/** Too many requests for this build at once: the API's 429. */
export class BuildBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildBusyError';
  }
}

/** The build cannot act on the command now (it is being undeployed): the API's 409. */
export class CommandRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandRefusedError';
  }
}

/** How long a command waits for a worker to answer before it goes as a signal instead. */
const WORKER_WAIT_MS = 5_000;
const GRPC_RESOURCE_EXHAUSTED = 8;

/**
 * `accepted`: the build took it; `no-op`: it had nothing to do (answered, not an error);
 * `queued`: no worker answered in time, so Temporal keeps it as a signal until one does.
 */
export type CommandOutcome = 'accepted' | 'no-op' | 'queued';

/**
 * Starts the build of `commit`, or finds the one already running: the workflow id is derived
 * from the build's identity, so a redelivered webhook or a racing trigger yields one build.
 * Refuses (and logs) commits whose values are unsafe or whose repo/branch is not configured.
 * `capRef: false` leaves the ref's other builds alone (RUNBOAT_MAX_BUILDS_PER_REF): for a commit
 * asked for again, which is not the ref's newest.
 */
export async function startBuild(
  client: Client,
  config: Config,
  commit: CommitInfo,
  { capRef = true }: { capRef?: boolean } = {},
): Promise<BuildRef> {
  let build: BuildRef;
  let repo: BuildRepoSettings;
  try {
    build = buildRef(commit);
    const entry = findRepoSettings(config, build.commit.repo, build.commit.target_branch);
    if (!entry) {
      throw new UnsupportedBuildError(
        `${build.commit.repo} ${build.commit.target_branch} matches no RUNBOAT_REPOS entry`,
      );
    }
    repo = captureRepoSettings(entry);
  } catch (error) {
    logger.warn({ commit, reason: (error as Error).message }, 'build refused');
    throw error;
  }
  await client.workflow.start<BuildWorkflow>('buildWorkflow', newBuildStart(config, build, repo));
  if (!capRef) return build;
  try {
    await capBuildsOfRef(client, config, build);
  } catch (error) {
    // The build is started; its elders go at the next build of the ref or by eviction.
    logger.warn({ err: error, build: build.name }, 'per-ref cap not applied');
  }
  return build;
}

/** Undeploys `name` without its cleanup job; the reason is kept in the build's history. */
export async function forceUndeployBuild(client: Client, name: string, reason: string): Promise<void> {
  await client.workflow.getHandle(buildWorkflowId(name)).signal(forceUndeploySignal, reason);
}

/**
 * Gives `command` to the build. A command with nothing to do is answered from a query, which
 * adds nothing to the history (floods of them cost the build nothing); a 409 throws
 * CommandRefusedError. The rest goes as an update, which the workflow validates again; without a
 * worker to answer in time, as a signal, which Temporal keeps until a worker comes and which the
 * workflow judges the same way, so a command sent both ways acts once.
 */
export async function sendBuildCommand(
  client: Client,
  name: string,
  command: BuildCommand,
): Promise<CommandOutcome> {
  const handle = client.workflow.getHandle(buildWorkflowId(name));
  const snapshot = await withinDeadline(client, WORKER_WAIT_MS, () => handle.query(buildStateQuery)).catch(
    (error: unknown) => {
      if (error instanceof WorkflowNotFoundError) throw error;
      // Temporal buffers few queries per workflow: the caller should come back in a moment.
      if (grpcCode(error) === GRPC_RESOURCE_EXHAUSTED) throw new BuildBusyError(`build ${name} is busy`);
      return undefined; // no worker answered: the signal below waits for one
    },
  );
  if (snapshot) {
    const verdict = judgeCommand(snapshot.status, snapshot.pending_commands, command);
    if (verdict.kind === 'no-op') return 'no-op';
    if (verdict.kind === 'not-possible') throw new CommandRefusedError(`build ${name}: ${verdict.reason}`);
    try {
      await withinDeadline(client, WORKER_WAIT_MS, () =>
        handle.executeUpdate(commandUpdate, { args: [command] }),
      );
      return 'accepted';
    } catch (error) {
      const refusal = error instanceof WorkflowUpdateFailedError ? error.cause : undefined;
      // The build changed between the query and the update.
      if (refusal instanceof ApplicationFailure && refusal.type === CommandRefusal.noOp) return 'no-op';
      if (refusal instanceof ApplicationFailure)
        throw new CommandRefusedError(`build ${name}: ${refusal.message}`);
      if (!(error instanceof WorkflowUpdateRPCTimeoutOrCancelledError)) throw error;
    }
  }
  await handle.signal(commandSignals[command]);
  return 'queued';
}

const grpcCode = (error: unknown): unknown => (error as { cause?: { code?: unknown } }).cause?.code;

export async function getBuildState(client: Client, name: string): Promise<BuildSnapshot> {
  return client.workflow.getHandle(buildWorkflowId(name)).query(buildStateQuery);
}

/** The build name of `commit`, or undefined when GitHub sent values no build can have. */
function safeBuildName(commit: CommitInfo): string | undefined {
  try {
    return buildRef(commit).name;
  } catch (error) {
    if (error instanceof UnsafeCommitInfoError) return undefined;
    throw error;
  }
}

/** Asks every build matching `filter` (and the build of `newest`) to undeploy; returns their names. */
export async function undeployBuilds(
  client: Client,
  config: Config,
  filter: BuildFilter,
  newest?: CommitInfo,
): Promise<string[]> {
  const names = new Set((await listBuilds(client, config, filter)).map((build) => build.name));
  await Promise.all([...names].map((name) => sendBuildCommand(client, name, 'undeploy')));
  // Visibility lags: a build started a moment ago may not be listed yet. GitHub names the
  // newest commit of a closed PR or deleted branch, so its build is told directly, if it runs.
  const name = newest && safeBuildName(newest);
  if (name && !names.has(name)) {
    try {
      await sendBuildCommand(client, name, 'undeploy');
      names.add(name);
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) throw error;
    }
  }
  return [...names];
}
