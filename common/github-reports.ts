import type { BuildRef } from './types';

// What the build's steps tell GitHub, and how long to hold the next report when GitHub refuses
// one. Plain data and arithmetic: the reporter workflow imports it too.

export type CommitStatusState = 'pending' | 'success' | 'failure' | 'error';

/**
 * One report of a build: its commit status (`status`), or its GitHub deployment's status
 * (`deployment`, which also has `inactive` once the build is undeployed). Only a build's newest
 * report of each target matters: GitHub shows the last one posted.
 */
export interface GitHubReport {
  build: ReportedBuild;
  target: 'status' | 'deployment';
  state: CommitStatusState | 'inactive';
  description: string;
}

export const reportKey = (report: GitHubReport): string => `${report.build.name} ${report.target}`;

/** What a report needs of its build: its name (the page GitHub links to) and its commit. */
export type ReportedBuild = Pick<BuildRef, 'name' | 'commit'>;

/**
 * The order reports go in when several are due: commit statuses first (the check a pull request
 * shows, what its reviewers wait for), then deployment statuses, and last the deployments of
 * builds already undeployed going inactive. Within each, the order they were queued in.
 */
export function inDeliveryOrder(reports: GitHubReport[]): GitHubReport[] {
  const rank = (report: GitHubReport) =>
    report.target === 'status' ? 0 : report.state === 'inactive' ? 2 : 1;
  return reports
    .map((report, at) => ({ report, at }))
    .sort((a, b) => rank(a.report) - rank(b.report) || a.at - b.at)
    .map(({ report }) => report);
}

/**
 * The reports, in delivery order, whose JSON fits in `bytes`, and those past it: what a
 * continue-as-new can carry (Temporal refuses a payload over 2 MB, and the reporter would be
 * stuck retrying that workflow task). The ones that would have gone last are the ones left out.
 */
export function reportsWithin(
  reports: GitHubReport[],
  bytes: number,
): { kept: GitHubReport[]; left: GitHubReport[] } {
  let used = 0;
  const fits = reports.findIndex((report) => (used += JSON.stringify(report).length + 1) > bytes);
  return fits === -1
    ? { kept: reports, left: [] }
    : { kept: reports.slice(0, fits), left: reports.slice(fits) };
}

/**
 * Why a delivery stopped before its last report: GitHub's rate limit (with the wait it asked
 * for, when it said), or GitHub unreachable or failing (5xx, network).
 */
export type GitHubRefusal = { kind: 'rate-limited'; retryAfterMs?: number } | { kind: 'unavailable' };

export interface GitHubDelivery {
  /** How many of the reports given, from the first, are done (posted, or refused for good). */
  done: number;
  refusal?: GitHubRefusal;
}

const MINUTE_MS = 60_000;
const UNAVAILABLE_FIRST_WAIT_MS = 5_000;
const LONGEST_WAIT_MS = 60 * MINUTE_MS;

/**
 * The wait before the next delivery after `refusals` refusals in a row, as GitHub asks: no
 * request before the time its answer names; without one, a minute after a rate limit; and
 * longer each time it refuses again.
 */
export function waitAfterRefusal(refusal: GitHubRefusal, refusals: number): number {
  const doubling = 2 ** Math.min(Math.max(refusals - 1, 0), 10);
  const backoff = Math.min(
    (refusal.kind === 'unavailable' ? UNAVAILABLE_FIRST_WAIT_MS : MINUTE_MS) * doubling,
    LONGEST_WAIT_MS,
  );
  if (refusal.kind === 'rate-limited' && refusal.retryAfterMs !== undefined)
    return refusals <= 1 ? refusal.retryAfterMs : Math.max(refusal.retryAfterMs, backoff);
  return backoff;
}
