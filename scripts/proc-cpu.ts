import { readFileSync } from 'node:fs';
import { releaseHistories, releases } from '../worker/self-check';

// CPU time of processes from /proc, for the benchmarks.

const CLOCK_TICKS = 100; // USER_HZ on Linux

/**
 * CPU seconds of a process and its descendants: the live ones (the worker's long-lived
 * kustomize-renderer) read one by one, the ended ones through the reaped-children counters.
 */
export function cpuSeconds(pid: number): number {
  const ticks = statTicks(pid);
  if (!ticks) return 0; // ended between listing and reading
  const own = (ticks.own + ticks.reaped) / CLOCK_TICKS;
  return own + childPids(pid).reduce((total, child) => total + cpuSeconds(child), 0);
}

/** CPU seconds of the process itself, without any child's. */
export function ownCpuSeconds(pid: number): number {
  return (statTicks(pid)?.own ?? 0) / CLOCK_TICKS;
}

/** utime + stime, and cutime + cstime (children reaped): fields 14-17 of proc(5). */
function statTicks(pid: number): { own: number; reaped: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Counted from `state` (field 3): the command before it may hold spaces.
    const fields = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    return { own: fields[11] + fields[12], reaped: fields[13] + fields[14] };
  } catch {
    return undefined;
  }
}

/** A set of processes whose CPU is counted together. */
export class CpuMeter {
  constructor(private readonly pids: Record<string, number>) {}
  sample(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
  }
}

/** What each count (CPU seconds, requests) grew by from `before` to `after`. */
export function growth(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((name) => [name, after[name] - (before[name] ?? 0)]));
}

export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU milliseconds this process takes for a fixed piece of JavaScript work (JSON round trips of
 * the latest release's recorded histories, the best of three): the same commit costs a third
 * more CPU on some of these shared machines than on others, and this tells a slower machine
 * from a costlier change when runs of different days are compared. Lower is faster.
 */
export function calibrationCpuMs(): number {
  const texts = releaseHistories(releases().at(-1)!.version).map((file) => readFileSync(file, 'utf8'));
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    const start = process.cpuUsage();
    for (let i = 0; i < 300; i++) for (const text of texts) JSON.stringify(JSON.parse(text));
    const { user, system } = process.cpuUsage(start);
    best = Math.min(best, (user + system) / 1000);
  }
  return Math.round(best);
}
