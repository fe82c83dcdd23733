import { describe, expect, it } from 'vitest';
import { judgeCommand } from '../common/commands';

// How a build judges a command from its status and pending commands (update validator and
// signal handler alike).

describe('judgeCommand', () => {
  it('refuses everything once an undeploy is pending or running, but another undeploy', () => {
    for (const command of ['start', 'stop', 'reset'] as const) {
      expect(judgeCommand('undeploying', [], command).kind).toBe('not-possible');
      expect(judgeCommand('started', ['undeploy'], command).kind).toBe('not-possible');
    }
    // A redelivered `closed` webhook or a second click: answered as done, not as a conflict.
    expect(judgeCommand('undeploying', [], 'undeploy').kind).toBe('no-op');
    expect(judgeCommand('started', ['undeploy'], 'undeploy').kind).toBe('no-op');
  });

  it('answers start and stop that change nothing as no-ops (SPEC §3)', () => {
    expect(judgeCommand('started', [], 'start').kind).toBe('no-op');
    expect(judgeCommand('starting', [], 'start').kind).toBe('no-op');
    expect(judgeCommand('initializing', [], 'start').kind).toBe('no-op');
    expect(judgeCommand('initializing', [], 'stop').kind).toBe('no-op');
    expect(judgeCommand('stopped', [], 'stop').kind).toBe('no-op');
    expect(judgeCommand('failed', [], 'stop').kind).toBe('no-op');
  });

  it('accepts the commands that act', () => {
    expect(judgeCommand('stopped', [], 'start')).toEqual({ kind: 'accept' });
    expect(judgeCommand('failed', [], 'start')).toEqual({ kind: 'accept' });
    expect(judgeCommand('started', [], 'stop')).toEqual({ kind: 'accept' });
    expect(judgeCommand('initializing', [], 'reset')).toEqual({ kind: 'accept' });
    expect(judgeCommand('started', ['stop'], 'undeploy')).toEqual({ kind: 'accept' });
    // After a pending reset, the build initializes again: a stop then still has work.
    expect(judgeCommand('started', ['reset'], 'stop')).toEqual({ kind: 'accept' });
  });

  it('collapses duplicates, and lets a command cancel its pending opposite', () => {
    expect(judgeCommand('stopped', ['start'], 'start').kind).toBe('no-op');
    expect(judgeCommand('started', ['reset'], 'reset').kind).toBe('no-op');
    expect(judgeCommand('started', ['stop'], 'start')).toEqual({ kind: 'cancel-pending', command: 'stop' });
    expect(judgeCommand('stopped', ['start'], 'stop')).toEqual({ kind: 'cancel-pending', command: 'start' });
  });
});
