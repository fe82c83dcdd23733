import { condition, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { searchAttributes } from '../common/search-attributes';
import type { BuildState } from '../common/types';
import { visitedSignal } from './definitions';

// Idle stop (RUNBOAT_AUTO_STOP_AFTER): a started build nobody has opened for that long is
// stopped by its own workflow. A timer costs nothing while it waits, so this scales with the
// number of builds for free; visits only move the deadline, they never touch the timer (when it
// fires early, the workflow sleeps again for what is left).

/** Records visits in the state and the `RunboatLastVisited` search attribute. */
export function recordVisits(state: BuildState): void {
  setHandler(visitedSignal, () => {
    const now = new Date();
    state.last_visited = now.toISOString();
    upsertSearchAttributes([{ key: searchAttributes.lastVisited, value: now }]);
  });
}

/** When a started build becomes idle: `autoStop` after its last visit or its last start. */
export function idleDeadline(state: BuildState, autoStopSeconds: number): number {
  const time = (iso: string | null | undefined) => (iso ? Date.parse(iso) : 0);
  return Math.max(time(state.last_visited), time(state.last_scaled)) + autoStopSeconds * 1000;
}

/**
 * Waits until `ready()`; true when it is, false when the build is started and went unvisited
 * for `autoStopSeconds` first. Without a setting, or when not started, it only waits.
 */
export async function untilReadyOrIdle(
  ready: () => boolean,
  state: BuildState,
  autoStopSeconds: number | undefined,
): Promise<boolean> {
  for (;;) {
    if (autoStopSeconds === undefined || state.status !== 'started') {
      await condition(ready);
      return true;
    }
    const remaining = idleDeadline(state, autoStopSeconds) - Date.now();
    if (remaining <= 0) return ready();
    if (await condition(ready, remaining)) return true;
  }
}
