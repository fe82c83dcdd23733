import { readdirSync, readFileSync } from 'node:fs';
import { renderKubefiles } from '../activities/kubefiles';
import { buildRef } from '../common/build';
import { loadConfig } from '../common/config';
import { forEachAtOnce } from './at-once';
import { binary } from './paths';

// `npm run bench:render`: CPU and wall time per render of the default kubefiles in
// `deployment` mode, sequentially and with concurrent renders. CPU is this process's plus its
// children's: those it has reaped (cutime + cstime of /proc/self/stat) and those still alive
// (utime + stime of each /proc/<pid>/stat whose parent is this process).

const RENDERS = Number(process.env.BENCH_RENDERS ?? 200);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const TICK_MS = 10; // USER_HZ is 100 on Linux

/** [utime + stime, cutime + cstime] of a /proc/<pid>/stat, in ms; fields after the command. */
function procTimes(pid: number | 'self'): { ppid: number; own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
  return {
    ppid: fields[1],
    own: (fields[11] + fields[12]) * TICK_MS,
    children: (fields[13] + fields[14]) * TICK_MS,
  };
}

function cpuMs(): { self: number; children: number } {
  const self = procTimes('self');
  let live = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const times = procTimes(Number(entry));
      if (times.ppid === process.pid) live += times.own + times.children;
    } catch {
      // Exited while listing.
    }
  }
  return { self: self.own, children: self.children + live };
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

async function main(): Promise<void> {
  const config = loadConfig({
    RUNBOAT_BUILD_NAMESPACE: 'bench',
    RUNBOAT_BUILD_DOMAIN: 'bench.test',
    RUNBOAT_REPOS: JSON.stringify([{ repo: '^oca/.*', branch: '.*', builds: [{ image: 'odoo:16' }] }]),
    RUNBOAT_KUSTOMIZE_RENDERER: binary('kustomize-renderer'),
  });
  const build = (i: number) =>
    buildRef({
      repo: 'oca/mis-builder',
      target_branch: '16.0',
      pr: i + 1,
      git_commit: i.toString(16).padStart(40, '0'),
    });
  // Warm up (module loading, first spawn) outside the measurement.
  await renderKubefiles(config, build(RENDERS), 'deployment');

  const rows: string[][] = [];
  for (const concurrency of [1, CONCURRENCY]) {
    const walls: number[] = [];
    const before = cpuMs();
    const started = performance.now();
    await forEachAtOnce(RENDERS, concurrency, async (i) => {
      const t0 = performance.now();
      await renderKubefiles(config, build(i), 'deployment');
      walls.push(performance.now() - t0);
    });
    const elapsed = performance.now() - started;
    const after = cpuMs();
    const self = (after.self - before.self) / RENDERS;
    const children = (after.children - before.children) / RENDERS;
    rows.push([
      String(concurrency),
      String(RENDERS),
      (self + children).toFixed(1),
      self.toFixed(1),
      children.toFixed(1),
      percentile(walls, 50).toFixed(1),
      percentile(walls, 95).toFixed(1),
      ((RENDERS / elapsed) * 1000).toFixed(0),
    ]);
  }
  const header = [
    'concurrency',
    'renders',
    'CPU ms/render',
    'node ms',
    'children ms',
    'wall p50 ms',
    'wall p95 ms',
    'renders/s',
  ];
  const table = [header, header.map(() => '---'), ...rows];
  for (const row of table) console.log(`| ${row.join(' | ')} |`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
