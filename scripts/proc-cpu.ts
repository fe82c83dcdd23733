import { readFileSync } from 'node:fs';

// CPU time of processes from /proc, for the benchmarks.

const CLOCK_TICKS = 100; // USER_HZ on Linux

/**
 * CPU seconds of a process and its descendants: the live ones (the worker's long-lived
 * kustomize-renderer) read one by one, the ended ones through the reaped-children counters.
 */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime: fields 14-17 of proc(5), counted from `state` (field 3).
    ticks = fields.slice(11, 15).reduce((total, value) => total + Number(value), 0);
  } catch {
    return 0; // ended between listing and reading
  }
  return ticks / CLOCK_TICKS + childPids(pid).reduce((total, child) => total + cpuSeconds(child), 0);
}

export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
