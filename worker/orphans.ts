import { planOrphans, type OrphanPlan } from '../activities/orphans';
import { buildCluster } from '../common/kubernetes';
import { runCommand } from './command';

// `npm run orphans`, or `node dist/worker/orphans.js` in the worker's image (README, Migrating
// from runboat): what the orphan sweep would do now, with the worker's configuration, without
// doing it: the builds it would adopt (runboat's, before a move) and those whose objects it would
// delete, and why. Run it before starting the worker on a namespace runboat hands over; `--all`
// shows every build, however recent its objects (the sweep waits RUNBOAT_ORPHAN_GRACE after a
// build's newest object).

export function describePlan(plan: OrphanPlan, graceSeconds: number): string {
  const byStatus = new Map<string, number>();
  for (const { state } of plan.adopt) byStatus.set(state.status, (byStatus.get(state.status) ?? 0) + 1);
  const unconfigured = plan.adopt.filter((build) => !build.repo).length;
  const statuses = [...byStatus].map(([status, count]) => `${count} ${status}`).join(', ');
  const lines = [
    `The orphan sweep would now (builds whose newest object is ${graceSeconds} s old or older):`,
    `- adopt ${plan.adopt.length} builds${statuses ? `: ${statuses}` : ''}` +
      (unconfigured ? ` (${unconfigured} of a repo or branch RUNBOAT_REPOS no longer has)` : ''),
    `- delete the objects of ${plan.sweep.length} builds`,
    '',
    ...plan.adopt.map(
      ({ state, phase, repo }) =>
        `adopt  ${state.name}  ${state.status}${phase === 'redeploy' ? ' (initialized again)' : ''}  ` +
        `${state.commit.repo} ${state.commit.target_branch}${state.commit.pr ? ` #${state.commit.pr}` : ''}` +
        `${repo ? '' : '  (not configured)'}`,
    ),
    ...plan.sweep.map(({ name, reason }) => `delete ${name}  ${reason}`),
  ];
  return lines.join('\n');
}

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args.some((arg) => arg !== '--all')) {
    console.error(
      'usage: npm run orphans [-- --all]  (--all: every build, not only those older than RUNBOAT_ORPHAN_GRACE)',
    );
    process.exit(2);
  }
  runCommand(async (client, config) => {
    const graceSeconds = args.includes('--all') ? 0 : config.orphanGraceSeconds;
    const plan = await planOrphans(client, config, buildCluster(config), graceSeconds);
    console.log(describePlan(plan, graceSeconds));
  });
}
