import { createHash } from 'node:crypto';
import type { BuildRef, CommitInfo } from './types';

// GitHub lets far more through in repo and branch names than is safe to put in YAML, labels
// or shell. Values reach kubefiles templates only when they match these.
export const SAFE_REPO = /^[a-z0-9_.-]+\/[a-z0-9_.-]+$/;
export const GIT_SHA = /^[0-9a-f]{40}$/;

/** Every character git forbids in a ref name (controls, space, `~^:?*[\`, and `@`) is outside it. */
const SAFE_BRANCH_CHARACTERS = /^[A-Za-z0-9_./-]+$/;
const MAX_BRANCH_LENGTH = 200;

/**
 * Why `name` is not a branch name this service takes, or undefined when it is. The one rule
 * for branch names from GitHub and from API parameters: a safe character set (so that no
 * name injects YAML, labels or shell), and git's own ref-name rules (`git check-ref-format
 * --branch`), so that nothing git could not have created, such as `../../x`, gets through.
 * The wording completes a sentence that starts with the name.
 */
export function branchNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty';
  if (name.length > MAX_BRANCH_LENGTH) return `is longer than ${MAX_BRANCH_LENGTH} characters`;
  // Controls, space, ~ ^ : ? * [ \ and the `@` of `@{` or a lone `@` all fail here.
  if (!SAFE_BRANCH_CHARACTERS.test(name)) return 'has characters outside [A-Za-z0-9_./-]';
  if (name.includes('..')) return 'contains ".." (git forbids it)';
  if (name.startsWith('/') || name.endsWith('/')) return 'starts or ends with "/" (git forbids it)';
  if (name.includes('//')) return 'contains "//" (git forbids it)';
  if (name.endsWith('.')) return 'ends with "." (git forbids it)';
  if (name.startsWith('-')) return 'starts with "-" (git forbids it for branches)';
  for (const component of name.split('/')) {
    if (component.startsWith('.')) return `has a component starting with "." (git forbids it)`;
    if (component.endsWith('.lock')) return `has a component ending with ".lock" (git forbids it)`;
  }
  return undefined;
}

export class UnsafeCommitInfoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeCommitInfoError';
  }
}

/** Lower-cases the repo and checks every value GitHub gave against a safe character set. */
export function validateCommitInfo(commit: CommitInfo): CommitInfo {
  const repo = commit.repo.toLowerCase();
  if (!SAFE_REPO.test(repo)) {
    throw new UnsafeCommitInfoError(`repo ${JSON.stringify(commit.repo)} has characters outside [a-z0-9_.-]`);
  }
  const branchProblem = branchNameProblem(commit.target_branch);
  if (branchProblem) {
    throw new UnsafeCommitInfoError(`branch ${JSON.stringify(commit.target_branch)} ${branchProblem}`);
  }
  if (commit.pr !== null && !(Number.isSafeInteger(commit.pr) && commit.pr > 0)) {
    throw new UnsafeCommitInfoError(`pr ${JSON.stringify(commit.pr)} is not a positive integer`);
  }
  if (!GIT_SHA.test(commit.git_commit)) {
    throw new UnsafeCommitInfoError(`commit ${JSON.stringify(commit.git_commit)} is not a 40-digit hex sha`);
  }
  return { ...commit, repo };
}

/** What `buildName` makes, and so all that API paths and queries accept as a build name. */
export const BUILD_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function buildSlug(commit: CommitInfo): string {
  const pr = commit.pr === null ? '' : `-pr${commit.pr}`;
  return `${commit.repo}-${commit.target_branch}${pr}-${commit.git_commit.slice(0, 12)}`
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '-');
}

/**
 * A readable prefix of the slug plus a hash of the whole identity: unique, at most 51
 * characters so that `<name>-<suffix>` object names stay valid DNS labels, and starting and
 * ending with an alphanumeric as label values must.
 */
export function buildName(commit: CommitInfo): string {
  const identity = [commit.repo, commit.target_branch, commit.pr ?? '', commit.git_commit].join('\n');
  const hash = createHash('sha256').update(identity).digest('hex').slice(0, 10);
  const prefix = buildSlug(commit)
    .slice(0, 40)
    .replace(/^-+|-+$/g, '');
  return prefix ? `${prefix}-${hash}` : `b-${hash}`;
}

/** runboat's build names: `b` and a random uuid. Its builds keep them when adopted. */
const RUNBOAT_BUILD_NAME = /^b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Whether `name` may name the build of `commit` (which `validateCommitInfo` passed): the name
 * this service derives from it, or a name runboat gave (a build adopted from runboat).
 */
export function namesBuildOf(name: string, commit: CommitInfo): boolean {
  return name === buildName(commit) || RUNBOAT_BUILD_NAME.test(name);
}

export function buildRef(commit: CommitInfo): BuildRef {
  const safe = validateCommitInfo(commit);
  return { name: buildName(safe), slug: buildSlug(safe), commit: safe };
}
