import { describe, expect, it } from 'vitest';
import {
  evict,
  orderCommands,
  orderStillApplies,
  planEviction,
  type EvictionLimits,
  type EvictionSource,
} from '../common/eviction';
import type { BuildSnapshot, BuildState, BuildStatus } from '../common/types';
import { at, build } from './build-snapshots';

// Eviction picks its candidates from visibility and tells only the builds it acts on (plus
// candidates visibility showed stale, which refuse), yet decides as `planEviction` does on exact
// states.

/**
 * Visibility as the fake shows it: the exact states without their pending commands, unless told.
 * Its builds take orders as the build workflow does (`orderStillApplies`), and keep them.
 */
function fakeSource(
  exact: BuildSnapshot[],
  { visible = exact as BuildState[], failing = new Set<string>() } = {},
) {
  const calls = { count: 0, list: 0, order: [] as string[] };
  const byName = new Map(exact.map((b) => [b.name, b]));
  const source: EvictionSource = {
    async count(statuses) {
      calls.count++;
      return visible.filter((b) => statuses.includes(b.status)).length;
    },
    async list(statuses) {
      calls.list++;
      return visible
        .filter((b) => !statuses || statuses.includes(b.status))
        .map(({ name, slug, commit, status, init_status, created, last_scaled, last_error }) => ({
          ...{ name, slug, commit, status, init_status, created, last_scaled, last_error },
        }));
    },
    async order(name, order) {
      calls.order.push(name);
      if (failing.has(name)) throw new Error(`the order to ${name} timed out`);
      const build = byName.get(name);
      if (!build || !orderStillApplies(build, order)) return { taken: false, exact: build };
      byName.set(name, { ...build, pending_commands: [...build.pending_commands, ...orderCommands(order)] });
      return { taken: true };
    },
  };
  return { source, calls };
}

/** The builds a plan acts on (a build may be both stopped and undeployed). */
const actions = (plan: { stop: string[]; undeploy: string[] }) =>
  new Set([...plan.stop, ...plan.undeploy]).size;

describe('evict', () => {
  it('within the limits, counts and nothing more', async () => {
    const builds = [build('a', 'started'), build('b', 'stopped'), build('c', 'initializing')];
    const { source, calls } = fakeSource(builds);
    expect(await evict(source, { maxStarted: 1, maxDeployed: 3 })).toMatchObject({
      stop: [],
      undeploy: [],
      ordered: 0,
    });
    expect(calls).toEqual({ count: 2, list: 0, order: [] });
  });

  it('decides as planEviction on exact states, one order per build it acts on', async () => {
    // A seeded mix of statuses, branches and PRs: many runs, same decisions, bounded orders.
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const statuses: BuildStatus[] = ['initializing', 'failed', 'stopped', 'started', 'starting', 'stopping'];
    for (let run = 0; run < 50; run++) {
      const builds = Array.from({ length: 60 }, (_, i) =>
        build(`b${run}-${i}`, statuses[Math.floor(random() * statuses.length)], {
          branch: ['16.0', '17.0', '18.0'][Math.floor(random() * 3)],
          pr: random() < 0.5 ? Math.floor(random() * 5) : null,
        }),
      );
      const limits: EvictionLimits = {
        maxStarted: Math.floor(random() * 20),
        maxDeployed: 10 + Math.floor(random() * 50),
      };
      const { source, calls } = fakeSource(builds);
      const selection = await evict(source, limits);
      const exact = planEviction(builds, limits);
      expect({ stop: selection.stop, undeploy: selection.undeploy }).toEqual(exact);
      expect(calls.order.length).toBe(actions(exact));
      expect(calls.list).toBeLessThanOrEqual(1);
    }
  });

  it('re-checks candidates: a second run right after the first sees the orders it gave', async () => {
    const builds = [
      build('a', 'started'),
      build('b', 'started'),
      build('c', 'stopped'),
      build('d', 'started'),
    ];
    const limits = { maxStarted: 1, maxDeployed: 3 };
    // The workflows take the orders but have not acted yet: visibility still shows the old states.
    const { source, calls } = fakeSource(builds);
    const first = await evict(source, limits);
    expect(first).toMatchObject({ stop: ['a', 'b'], undeploy: ['a'] });
    expect(calls.order.sort()).toEqual(['a', 'b']);
    calls.order = [];
    expect(await evict(source, limits)).toMatchObject({ stop: [], undeploy: [] });
    // Only the stale candidates were told again, once each, and refused.
    expect(calls.order.sort()).toEqual(['a', 'b']);
  });

  it('picks the next candidate when visibility is stale about the first', async () => {
    // Visibility still shows `a` stopped long ago; it was started again since.
    const a = build('a', 'stopped');
    const rest = [build('b', 'stopped', { pr: 1 }), build('c', 'stopped', { pr: 2 }), build('d', 'started')];
    const exact = [{ ...a, status: 'started' as const, last_scaled: at() }, ...rest];
    const { source, calls } = fakeSource(exact, { visible: [a, ...rest] });
    const selection = await evict(source, { maxStarted: 5, maxDeployed: 3 });
    expect(selection).toMatchObject({ stop: [], undeploy: ['b'] });
    expect(calls.order).toEqual(['a', 'b']);
  });

  it('skips a build that cannot be given its order and still evicts the others', async () => {
    const builds = [
      build('old', 'stopped', { pr: 1 }),
      build('broken', 'stopped', { pr: 2 }),
      build('mid', 'stopped', { pr: 3 }),
      build('new', 'stopped', { pr: 4 }),
      build('run1', 'started'),
      build('run2', 'started', { branch: '17.0' }),
    ];
    const { source, calls } = fakeSource(builds, { failing: new Set(['broken']) });
    const selection = await evict(source, { maxStarted: 1, maxDeployed: 3 });
    // `broken` stays counted as deployed, so the same number of builds goes, the next in line instead.
    expect(selection.stop).toEqual(['run1']);
    expect(selection.undeploy).toEqual(['old', 'mid', 'new']);
    expect(selection.skipped).toEqual([{ name: 'broken', error: expect.stringContaining('timed out') }]);
    expect(calls.order.length).toBeLessThanOrEqual(actions(selection) + 1);
  });

  it('leaves out builds whose workflow is gone', async () => {
    const builds = [
      build('gone', 'stopped', { pr: 1 }),
      build('b', 'stopped', { pr: 2 }),
      build('c', 'started'),
    ];
    const { source } = fakeSource(builds.slice(1), { visible: builds });
    expect(await evict(source, { maxStarted: 5, maxDeployed: 1 })).toMatchObject({
      stop: [],
      undeploy: ['b'],
    });
  });

  it('leaves a build that keeps changing for the next run', async () => {
    // `fickle` has changed whenever it is told (failed, reset, failed again...), still the oldest.
    const builds = [build('fickle', 'stopped', { pr: 1 }), build('b', 'stopped', { pr: 2 })];
    const { source, calls } = fakeSource(builds);
    const order = source.order.bind(source);
    source.order = async (name, given) => {
      if (name !== 'fickle') return order(name, given);
      calls.order.push(name);
      const status = given.status === 'failed' ? 'stopped' : 'failed';
      return { taken: false, exact: { ...builds[0], status } };
    };
    expect(await evict(source, { maxStarted: 5, maxDeployed: 1 })).toMatchObject({
      stop: [],
      undeploy: ['b'],
    });
    expect(calls.order.filter((name) => name === 'fickle')).toHaveLength(2);
  });
});
