import { renderKubefiles } from '../activities/kubefiles';
import { buildRef } from '../common/build';
import { loadConfig } from '../common/config';
import { forEachAtOnce } from './at-once';
import { binary } from './paths';
import { percentile } from './percentile';
import { cpuSeconds, ownCpuSeconds } from './proc-cpu';

// `npm run bench:render`: CPU and wall time per render of the default kubefiles in
// `deployment` mode, sequentially and with concurrent renders. CPU is this process's (the
// worker's share) and its children's (the renderer's), from /proc (scripts/proc-cpu.ts).

const RENDERS = Number(process.env.BENCH_RENDERS ?? 200);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);

/** CPU ms of this process, and of its children (the renderer, and any it reaped). */
function cpuMs(): { self: number; children: number } {
  const self = ownCpuSeconds(process.pid) * 1000;
  return { self, children: cpuSeconds(process.pid) * 1000 - self };
}

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
