import { describe, expect, it } from 'vitest';
import { planEviction } from '../common/eviction';
import { build } from './build-snapshots';

describe('planEviction', () => {
  it('does nothing within the limits', () => {
    const builds = [build('a', 'started'), build('b', 'stopped')];
    expect(planEviction(builds, { maxStarted: 1, maxDeployed: 2 })).toEqual({ stop: [], undeploy: [] });
  });

  it('counts starting builds as running and stops the ones scaled longest ago', () => {
    const builds = [build('a', 'starting'), build('b', 'started'), build('c', 'started')];
    expect(planEviction(builds, { maxStarted: 1, maxDeployed: 10 }).stop).toEqual(['a', 'b']);
  });

  it('counts a pending stop or undeploy as done, so a second run does not act again', () => {
    const builds = [
      build('a', 'started', { pending: ['stop'] }),
      build('b', 'stopped', { pending: ['undeploy'] }),
      build('c', 'started'),
      build('d', 'stopped', { branch: '17.0' }),
    ];
    expect(planEviction(builds, { maxStarted: 1, maxDeployed: 3 })).toEqual({ stop: [], undeploy: [] });
  });

  it('treats a start after a stop as running', () => {
    const builds = [build('a', 'started', { pending: ['stop', 'start'] }), build('b', 'started')];
    expect(planEviction(builds, { maxStarted: 1, maxDeployed: 10 }).stop).toEqual(['a']);
  });

  it('undeploys failed and stopped builds but never the newest of a branch; PR builds are not protected', () => {
    const builds = [
      build('pr-old', 'stopped', { pr: 5 }),
      build('failed', 'failed'),
      build('newest-16', 'stopped'),
      build('pr-new', 'stopped', { pr: 5 }),
      build('running', 'started', { branch: '17.0' }),
    ];
    expect(planEviction(builds, { maxStarted: 5, maxDeployed: 1 }).undeploy).toEqual([
      'pr-old',
      'failed',
      'pr-new',
    ]);
  });

  it('never undeploys started or initializing builds, even above max_deployed', () => {
    const builds = [
      build('a', 'initializing'),
      build('b', 'started', { branch: '17.0' }),
      build('c', 'started'),
    ];
    expect(planEviction(builds, { maxStarted: 5, maxDeployed: 1 }).undeploy).toEqual([]);
  });
});
