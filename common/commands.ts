import type { BuildCommand, BuildStatus } from './types';

// What a command does to a build, decided from its status and the commands it has yet to act
// on. Pure: the build workflow's update validator and its signal handler both decide with it,
// so a command arriving twice (an update and its fallback signal) is applied once.

export type CommandVerdict =
  /** Queue it. */
  | { kind: 'accept' }
  /** Cancels the opposite command still pending (a start after a pending stop, and back). */
  | { kind: 'cancel-pending'; command: BuildCommand }
  /** Nothing to do: answered, not an error (SPEC §3: start on a started build). */
  | { kind: 'no-op'; reason: string }
  /** Cannot be done now: the API answers 409. */
  | { kind: 'not-possible'; reason: string };

const opposite: Partial<Record<BuildCommand, BuildCommand>> = { start: 'stop', stop: 'start' };

/** The statuses in which `start` or `stop` has nothing to do. */
const alreadyThere: Partial<Record<BuildCommand, readonly BuildStatus[]>> = {
  start: ['initializing', 'starting', 'started'],
  stop: ['initializing', 'stopping', 'stopped', 'failed'],
};

export function judgeCommand(
  status: BuildStatus,
  pending: readonly BuildCommand[],
  command: BuildCommand,
): CommandVerdict {
  if (status === 'undeploying' || pending.includes('undeploy')) {
    // A second undeploy (GitHub redelivering a `closed` event, say) asks for what is under way.
    return command === 'undeploy'
      ? { kind: 'no-op', reason: 'the build is already being undeployed' }
      : { kind: 'not-possible', reason: 'the build is being undeployed' };
  }
  if (command === 'undeploy') return { kind: 'accept' };
  if (command === 'reset') {
    return pending.includes('reset')
      ? { kind: 'no-op', reason: 'a reset is already pending' }
      : { kind: 'accept' };
  }
  // A pending reset re-initializes and starts the build: start and stop wait their turn after it.
  const last = [...pending].reverse().find((c) => c === 'start' || c === 'stop');
  if (last === command) return { kind: 'no-op', reason: `a ${command} is already pending` };
  if (last === opposite[command]) return { kind: 'cancel-pending', command: last! };
  if (!pending.includes('reset') && alreadyThere[command]!.includes(status)) {
    return { kind: 'no-op', reason: `the build is ${status}` };
  }
  return { kind: 'accept' };
}
