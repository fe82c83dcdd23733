import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../common/config';

// The settings of issue 11's features (idle stop, per-ref caps, GitHub Deployments).

const REQUIRED = { RUNBOAT_BUILD_NAMESPACE: 'runboat-builds', RUNBOAT_BUILD_DOMAIN: 'runboat.example.com' };
const load = (env: Record<string, string> = {}) => loadConfig({ ...REQUIRED, ...env });

describe('RUNBOAT_AUTO_STOP_AFTER', () => {
  it('is unset by default', () => {
    expect(load().autoStopAfterSeconds).toBeUndefined();
  });

  it.each([
    ['3600', 3600],
    ['2h', 7200],
    ['30m', 1800],
    ['1h30m', 5400],
    ['90s', 90],
    ['1d', 86400],
  ])('reads %s as %i seconds', (value, seconds) => {
    expect(load({ RUNBOAT_AUTO_STOP_AFTER: value }).autoStopAfterSeconds).toBe(seconds);
  });

  it.each(['soon', '2 hours', '-5', '10s'])('refuses %s, naming the variable', (value) => {
    expect(() => load({ RUNBOAT_AUTO_STOP_AFTER: value })).toThrow(ConfigError);
    expect(() => load({ RUNBOAT_AUTO_STOP_AFTER: value })).toThrow(/RUNBOAT_AUTO_STOP_AFTER/);
  });
});

describe('RUNBOAT_MAX_BUILDS_PER_REF', () => {
  it('is unlimited by default and a positive integer when set', () => {
    expect(load().maxBuildsPerRef).toBeUndefined();
    expect(load({ RUNBOAT_MAX_BUILDS_PER_REF: '2' }).maxBuildsPerRef).toBe(2);
    expect(() => load({ RUNBOAT_MAX_BUILDS_PER_REF: '0' })).toThrow(/RUNBOAT_MAX_BUILDS_PER_REF/);
  });
});

describe('RUNBOAT_GITHUB_DEPLOYMENTS', () => {
  it('is on when a GitHub token is set, unless turned off', () => {
    expect(load().githubDeployments).toBe(false);
    expect(load({ RUNBOAT_GITHUB_TOKEN: 't' }).githubDeployments).toBe(true);
    expect(load({ RUNBOAT_GITHUB_TOKEN: 't', RUNBOAT_GITHUB_DEPLOYMENTS: 'false' }).githubDeployments).toBe(
      false,
    );
    expect(() => load({ RUNBOAT_GITHUB_DEPLOYMENTS: 'maybe' })).toThrow(/RUNBOAT_GITHUB_DEPLOYMENTS/);
  });
});
