import {
  condition,
  continueAsNew,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { BuildActivities } from '../activities';
import {
  inDeliveryOrder,
  reportKey,
  reportsWithin,
  waitAfterRefusal,
  type GitHubReport,
} from '../common/github-reports';
import {
  githubReportsCountsQuery,
  githubReportsQuery,
  githubReportsSignal,
  type GitHubReports,
} from './definitions';

// Every build's GitHub reports (commit statuses, deployment statuses), delivered by one
// long-lived workflow per task queue: GitHub's rate limits are the token's, not a worker's.
// Reports wait here, in Temporal, while GitHub refuses them (a crash or an upgrade loses none);
// a build's newer report replaces its older one not yet sent (GitHub shows the last one), and
// keeps its place in line.

const { deliverGitHubReports } = proxyActivities<BuildActivities>({
  // A batch at RUNBOAT_GITHUB_WRITES_PER_MINUTE's default (60) takes about as many seconds.
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

/** Reports a delivery takes at once; the others (and newer ones) wait for the next. */
const BATCH = 20;
/** The reporter's history replays whole after a worker restart: kept short. */
const MAX_HISTORY_EVENTS = 500;
/** A report GitHub failed on this many times in a row (about 85 minutes of waits) is given up. */
const MAX_FAILURES = 10;
/**
 * The wait GitHub asks for ends when the history is full (the reports signalled during an hour's
 * wait could fill it past Temporal's limits), and the next run waits out the rest. v7's runs
 * slept through it.
 */
const WAIT_CONTINUES_PATCH = 'github-wait-continues-as-new';
/** Due reports go commit statuses first (`inDeliveryOrder`); v7's runs sent them as queued. */
const BY_PRIORITY_PATCH = 'github-reports-by-priority';
/**
 * The queue a continue-as-new carries, in JSON characters (the reports are ASCII): about 5,000
 * reports, under the 2 MB Temporal takes in one payload with room for the rest of the input.
 */
const CARRIED_QUEUE_CHARS = 1_500_000;

export async function githubReportsWorkflow(initial: GitHubReports): Promise<void> {
  const queued = new Map<string, GitHubReport>(initial.queued.map((report) => [reportKey(report), report]));
  /** Reports GitHub failed on (5xx, network): each waits on its own, the others go on. */
  const retries = new Map(Object.entries(initial.retries ?? {}));
  let refusals = initial.refusals;
  /** GitHub asked for no request before this time (ms); carried over by continue-as-new. */
  let waitingUntil = initial.waitingUntil;
  /** Reports never delivered: GitHub failed on them too often, or a continue-as-new had no room. */
  let givenUp = initial.givenUp ?? 0;
  const byPriority = patched(BY_PRIORITY_PATCH);

  setHandler(githubReportsSignal, (reports) => {
    for (const report of reports) {
      queued.set(reportKey(report), report);
      retries.delete(reportKey(report));
    }
  });
  const state = (): GitHubReports => ({
    queued: inDeliveryOrder([...queued.values()]),
    refusals,
    retries: Object.fromEntries(retries),
    ...(waitingUntil === undefined ? {} : { waitingUntil }),
    ...(initial.historyLimit === undefined ? {} : { historyLimit: initial.historyLimit }),
    ...(givenUp ? { givenUp } : {}),
  });
  const waitingUntilText = () => (waitingUntil === undefined ? null : new Date(waitingUntil).toISOString());
  setHandler(githubReportsQuery, () => ({ ...state(), waitingUntil: waitingUntilText() }));
  setHandler(githubReportsCountsQuery, () => ({
    statuses: [...queued.values()].filter((report) => report.target === 'status').length,
    deployments: [...queued.values()].filter((report) => report.target === 'deployment').length,
    waitingUntil: waitingUntilText(),
    givenUp,
  }));

  const isDue = (report: GitHubReport) => (retries.get(reportKey(report))?.at ?? 0) <= Date.now();
  const due = () => {
    const ready = [...queued.values()].filter(isDue);
    return byPriority ? inDeliveryOrder(ready) : ready;
  };
  const nextRetryAt = () => Math.min(...[...retries.values()].map((retry) => retry.at));
  const historyFull = () => {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength > (initial.historyLimit ?? MAX_HISTORY_EVENTS);
  };
  const failedOn = (report: GitHubReport) => {
    const key = reportKey(report);
    if (queued.get(key) !== report) return; // replaced meanwhile: its newer state goes as new
    const failures = (retries.get(key)?.failures ?? 0) + 1;
    if (failures < MAX_FAILURES) {
      retries.set(key, { failures, at: Date.now() + waitAfterRefusal({ kind: 'unavailable' }, failures) });
      return;
    }
    queued.delete(key);
    retries.delete(key);
    givenUp++;
    log.warn('GitHub failed on a report too many times; given up', { report: key, state: report.state });
  };

  // A run continued as new in the middle of GitHub's wait goes on with it.
  if (waitingUntil !== undefined) {
    await waitOutTheLimit();
    waitingUntil = undefined;
  }
  for (;;) {
    const ready = () => [...queued.values()].some(isDue) || historyFull();
    if (retries.size) await condition(ready, Math.max(nextRetryAt() - Date.now(), 1));
    else await condition(ready);
    if (historyFull()) await continueAsNewWithTheQueue();
    const batch = due().slice(0, BATCH);
    if (!batch.length) continue;
    const { done, refusal } = await deliverGitHubReports(batch);
    for (const report of batch.slice(0, done)) {
      const key = reportKey(report);
      // A report replaced while it was being delivered stays queued: its newer state goes next.
      if (queued.get(key) !== report) continue;
      queued.delete(key);
      retries.delete(key);
    }
    if (refusal?.kind === 'unavailable') failedOn(batch[done]);
    if (refusal?.kind !== 'rate-limited') {
      refusals = 0;
      continue;
    }
    // GitHub's rate limits are the token's: nothing goes until the time it names.
    refusals++;
    const wait = waitAfterRefusal(refusal, refusals);
    waitingUntil = Date.now() + wait;
    if (patched(WAIT_CONTINUES_PATCH)) await waitOutTheLimit();
    else await sleep(wait);
    waitingUntil = undefined;
  }

  /**
   * The next run takes the queue, as much of it as one payload holds: past that, the reports that
   * would go last are given up, or the reporter could not continue at all (a queue of thousands:
   * GitHub refusing for hours while thousands of builds change).
   */
  async function continueAsNewWithTheQueue(): Promise<never> {
    const carried = state();
    const { kept, left } = reportsWithin(carried.queued, CARRIED_QUEUE_CHARS);
    if (left.length) {
      log.warn('Too many GitHub reports queued to carry over; the last ones given up', {
        kept: kept.length,
        givenUp: left.length,
      });
      for (const report of left) delete carried.retries?.[reportKey(report)];
    }
    return continueAsNew<typeof githubReportsWorkflow>({
      ...carried,
      queued: kept,
      ...(givenUp + left.length ? { givenUp: givenUp + left.length } : {}),
    });
  }

  /**
   * Until `waitingUntil`: a wait of up to an hour takes every report signalled meanwhile into the
   * history, so it ends when the history is full, and the next run waits out the rest.
   */
  async function waitOutTheLimit(): Promise<void> {
    const rest = (waitingUntil ?? 0) - Date.now();
    if (rest > 0 && (await condition(historyFull, rest))) await continueAsNewWithTheQueue();
  }
}
