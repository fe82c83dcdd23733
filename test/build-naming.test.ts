import { describe, expect, it } from 'vitest';
import {
  UnsafeCommitInfoError,
  branchNameProblem,
  buildName,
  buildRef,
  buildSlug,
  validateCommitInfo,
} from '../common/build';
import { buildWorkflowId } from '../workflows/definitions';
import type { CommitInfo } from '../common/types';

const SHA = 'abcdef0123456789abcdef0123456789abcdef01';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const commit = (overrides: Partial<CommitInfo> = {}): CommitInfo => ({
  repo: 'OCA/mis-builder',
  target_branch: '16.0',
  pr: null,
  git_commit: SHA,
  ...overrides,
});

/** The name of a build as the API computes it: validated (repo lower-cased) first. */
const nameOf = (overrides: Partial<CommitInfo> = {}) => buildRef(commit(overrides)).name;

describe('buildSlug', () => {
  it('is <repo>-<target_branch>-<sha[:12]> for a branch build', () => {
    expect(buildSlug(commit())).toBe('oca-mis-builder-16-0-abcdef012345');
  });

  it('is <repo>-<target_branch>-pr<N>-<sha[:12]> for a PR build', () => {
    expect(buildSlug(commit({ pr: 42 }))).toBe('oca-mis-builder-16-0-pr42-abcdef012345');
  });

  it('lower-cases and replaces every character outside [a-z0-9] with -', () => {
    expect(
      buildSlug(commit({ repo: 'Acme_Corp/odoo.Addons', target_branch: 'feature/New_Thing.v2', pr: 7 })),
    ).toBe('acme-corp-odoo-addons-feature-new-thing-v2-pr7-abcdef012345');
  });

  it('is what buildRef reports, and the same for OCA/X and oca/x', () => {
    const upper = buildRef(commit({ repo: 'OCA/X', pr: 3 }));
    const lower = buildRef(commit({ repo: 'oca/x', pr: 3 }));
    expect(upper.slug).toBe('oca-x-16-0-pr3-abcdef012345');
    expect(lower.slug).toBe(upper.slug);
  });
});

describe('buildName', () => {
  it('is deterministic', () => {
    expect(nameOf({ pr: 42 })).toBe(nameOf({ pr: 42 }));
    expect(buildName(commit({ repo: 'oca/mis-builder' }))).toBe(
      buildName(commit({ repo: 'oca/mis-builder' })),
    );
  });

  it('is stable across releases (workflow ids and labels of running builds depend on it)', () => {
    expect(nameOf({ pr: 42, git_commit: 'a'.repeat(40) })).toBe(
      'oca-mis-builder-16-0-pr42-aaaaaaaaaaaa-2a0f14f7d3',
    );
  });

  it('is the slug followed by a 10-digit hash when the slug is short', () => {
    const ref = buildRef(commit({ pr: 42 }));
    expect(ref.name).toMatch(/^oca-mis-builder-16-0-pr42-abcdef012345-[0-9a-f]{10}$/);
  });

  it('lower-cases the repo: OCA/X and oca/x are the same build', () => {
    expect(nameOf({ repo: 'OCA/X' })).toBe(nameOf({ repo: 'oca/x' }));
    expect(nameOf({ repo: 'OCA/X', pr: 5 })).toBe(nameOf({ repo: 'oca/x', pr: 5 }));
  });

  it('differs between the PR build and the branch build of the same sha', () => {
    expect(nameOf({ pr: 1 })).not.toBe(nameOf({ pr: null }));
    expect(nameOf({ pr: 1 })).not.toBe(nameOf({ pr: 2 }));
  });

  it('differs between shas, even when their first 12 digits are equal', () => {
    const a = `${'1'.repeat(12)}${'a'.repeat(28)}`;
    const b = `${'1'.repeat(12)}${'b'.repeat(28)}`;
    expect(buildSlug(commit({ git_commit: a }))).toBe(buildSlug(commit({ git_commit: b })));
    expect(nameOf({ git_commit: a })).not.toBe(nameOf({ git_commit: b }));
    expect(nameOf({ git_commit: a })).not.toBe(nameOf({ git_commit: SHA }));
  });

  it('differs between builds whose slugs collide', () => {
    const one = commit({ repo: 'oca/a-b', target_branch: '16.0' });
    const two = commit({ repo: 'oca/a', target_branch: 'b-16.0' });
    const three = commit({ repo: 'oca/a-b', target_branch: '16-0' });
    expect(buildSlug(one)).toBe(buildSlug(two));
    expect(buildSlug(one)).toBe(buildSlug(three));
    const names = new Set([nameOf(one), nameOf(two), nameOf(three)]);
    expect(names.size).toBe(3);
  });

  it.each([
    ['a short build', commit()],
    ['a PR build', commit({ pr: 123456 })],
    [
      'a long repo and branch',
      commit({ repo: `oca/${'x'.repeat(90)}`, target_branch: `${'y'.repeat(120)}/z`, pr: 99 }),
    ],
    ['a 200-character branch', commit({ target_branch: 'b'.repeat(200) })],
    [
      'punctuation at the cut',
      commit({ repo: 'oca/server-tools', target_branch: '16.0-mig.-._-/x-y', pr: 1 }),
    ],
    ['a repo starting with punctuation', commit({ repo: '.github/_private', target_branch: '_x' })],
    ['a repo of punctuation only', commit({ repo: '._/-.', target_branch: '_' })],
  ])('is a valid label value of at most 51 characters for %s', (_label, value) => {
    const name = nameOf(value);
    expect(name.length).toBeLessThanOrEqual(51);
    expect(name).toMatch(DNS_LABEL);
    // Every object is named `<name>-<suffix>`: with the longest suffix of the default
    // kubefiles (`-initialize`), a Job name stays a valid label value too.
    expect(`${name}-initialize`.length).toBeLessThanOrEqual(63);
  });

  it('keeps a readable prefix of the slug', () => {
    const value = commit({ repo: 'oca/server-tools', target_branch: '16.0', pr: 2744 });
    // The slug is 41 characters here: its first 40 stay readable, the hash follows.
    expect(buildSlug(value)).toBe('oca-server-tools-16-0-pr2744-abcdef012345');
    expect(nameOf(value)).toMatch(/^oca-server-tools-16-0-pr2744-abcdef01234-[0-9a-f]{10}$/);
  });
});

describe('buildWorkflowId', () => {
  it('derives the workflow id from the name', () => {
    expect(buildWorkflowId('oca-x-16-0-abcdef012345-0123456789')).toBe(
      'build-oca-x-16-0-abcdef012345-0123456789',
    );
  });
});

describe('validateCommitInfo', () => {
  it('accepts safe values and lower-cases the repo', () => {
    expect(validateCommitInfo(commit({ repo: 'OCA/Mis_Builder.v2', pr: 17 }))).toEqual({
      repo: 'oca/mis_builder.v2',
      target_branch: '16.0',
      pr: 17,
      git_commit: SHA,
    });
  });

  it.each(['16.0', 'main', 'feature/New_Thing-2', '16.0-ocabot-merge-pr-1-by-x', 'v1.2.3', '_tmp'])(
    'accepts branch %j unchanged',
    (target_branch) => {
      expect(validateCommitInfo(commit({ target_branch })).target_branch).toBe(target_branch);
    },
  );

  /** Calls `validate` and returns the UnsafeCommitInfoError it throws. */
  function refusal(value: CommitInfo, validate: (c: CommitInfo) => unknown = validateCommitInfo): Error {
    try {
      validate(value);
    } catch (error) {
      expect(error).toBeInstanceOf(UnsafeCommitInfoError);
      expect((error as Error).name).toBe('UnsafeCommitInfoError');
      return error as Error;
    }
    throw new Error(`expected ${JSON.stringify(value)} to be refused`);
  }

  it.each([
    'oca/x"',
    "oca/x'",
    'oca/x\n',
    'oca/x\nevil: true',
    'oca/my repo',
    'oca/$(whoami)',
    'oca/`id`',
    'oca/x;rm -rf /',
    'oca/x: y',
    'oca/{x}',
    'oca',
    'oca/x/y',
    '',
  ])('refuses repo %j, naming it', (repo) => {
    const error = refusal(commit({ repo }));
    expect(error.message).toContain(JSON.stringify(repo));
  });

  it.each([
    '16.0"',
    "16.0'",
    '16.0\n',
    '16.0"\n  evil: true',
    'x: y',
    '16.0 fix',
    '$(reboot)',
    '16.0;ls',
    '16.0|cat',
    '16.0&&id',
    '-rf',
    '--upload-pack=touch /tmp/x',
    '#comment',
    '',
    'b'.repeat(201),
  ])('refuses branch %j, naming it', (target_branch) => {
    const error = refusal(commit({ target_branch }));
    expect(error.message).toContain(JSON.stringify(target_branch));
  });

  it.each([
    'g'.repeat(40),
    'abcdef0',
    SHA.slice(0, 39),
    `${SHA}0`,
    `${SHA}\n`,
    `${SHA.slice(0, 39)} `,
    '',
    'HEAD',
  ])('refuses commit %j, naming it', (git_commit) => {
    const error = refusal(commit({ git_commit }));
    expect(error.message).toContain(JSON.stringify(git_commit));
  });

  it.each([0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2])('refuses pr %j, naming it', (pr) => {
    const error = refusal(commit({ pr }));
    expect(error.message).toContain(`pr ${JSON.stringify(pr)}`);
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Infinity],
    ['the string "5"', '5' as unknown as number],
  ])('refuses pr %s', (_label, pr) => {
    refusal(commit({ pr }));
  });

  it('is applied by buildRef', () => {
    const error = refusal(commit({ target_branch: '16.0"\n  evil: true' }), buildRef);
    expect(error.message).toContain(JSON.stringify('16.0"\n  evil: true'));
    refusal(commit({ pr: 0 }), buildRef);
    refusal(commit({ git_commit: 'abc' }), buildRef);
  });
});

describe('branchNameProblem (git check-ref-format --branch, within a safe character set)', () => {
  it.each(['16.0', 'main', 'feature/x.y', 'a.lockx', 'x.lock-1', '_', 'a/b/c', 'v1.2.3', 'b'.repeat(200)])(
    'accepts %j',
    (name) => {
      expect(branchNameProblem(name)).toBeUndefined();
    },
  );

  // One row per rule of git's, with the reason given.
  it.each([
    ['no ".."', '../../x', '".."'],
    ['no ".." inside', 'a..b', '".."'],
    ['no component starting with "."', '.hidden', 'starting with "."'],
    ['no later component starting with "."', 'feature/.x', 'starting with "."'],
    ['no component ending with ".lock"', 'main.lock', '".lock"'],
    ['no inner component ending with ".lock"', 'a.lock/b', '".lock"'],
    ['no "@{"', 'a@{1}', 'characters outside'],
    ['not "@"', '@', 'characters outside'],
    ['no control characters', 'a\x01b', 'characters outside'],
    ['no DEL', 'a\x7fb', 'characters outside'],
    ['no space', 'a b', 'characters outside'],
    ['no "~"', 'a~1', 'characters outside'],
    ['no "^"', 'a^', 'characters outside'],
    ['no ":"', 'a:b', 'characters outside'],
    ['no "?"', 'a?', 'characters outside'],
    ['no "*"', 'a*', 'characters outside'],
    ['no "["', 'a[0]', 'characters outside'],
    ['no "\\"', 'a\\b', 'characters outside'],
    ['not ending with "/"', 'a/', '"/"'],
    ['not starting with "/"', '/a', '"/"'],
    ['no "//"', 'a//b', '"//"'],
    ['not ending with "."', 'a.', 'ends with "."'],
    ['not starting with "-" (branches only)', '-x', '"-"'],
    ['not empty', '', 'empty'],
    ['at most 200 characters', 'b'.repeat(201), 'longer than 200'],
  ])('%s: refuses %j', (_rule, name, reason) => {
    expect(branchNameProblem(name)).toContain(reason);
    // The same rule in the one place that checks what reaches a build.
    expect(() => validateCommitInfo(commit({ target_branch: name }))).toThrow(UnsafeCommitInfoError);
  });
});
