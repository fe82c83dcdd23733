import { ScheduleOverlapPolicy, type WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildRef } from '../common/build';
import { lastScheduledResult } from '../common/schedules';
import type { CommitInfo } from '../common/types';
import type { WebhookRedelivery } from '../common/webhook-redelivery';
import { ensureWebhookRedeliverySchedule } from '../worker/schedule';
import { buildWorkflowId, webhookRedeliveryScheduleId } from '../workflows/definitions';
import { metricSample, payloads, scrapeMetrics } from './api-server';
import { WebhookSide } from '../scripts/github-webhook-side';
import { startReportingStack, type ReportingStack } from './github-recorder';
import { replayAndRecord, SHA, waitFor } from './helpers';

// GitHub does not send a failed delivery again by itself. Here GitHub's webhook side is played on
// loopback: it delivers real signed events to the API, records each attempt as GitHub lists them
// (newest first, a page at a time), and sends one again when asked, as a new attempt of the
// same event. The redelivery schedule must ask again exactly the events the API failed to take.

const HOOK = 'orgs/oca/hooks/7';
/** A second webhook, with no deliveries; GitHub refuses to list them while `tokenLacksRight`. */
const OTHER_HOOK = 'repos/oca/web/hooks/9';
let tokenLacksRight = false;

let reporting: ReportingStack;
let { github, stack, config } = {} as ReportingStack;
/** While set, GitHub cannot connect to the API: an attempt gets no answer (status 0). */
let apiDown = false;
const hook = new WebhookSide(HOOK, async (event, body, guid) => {
  if (apiDown) throw new Error('connection refused');
  return (await stack.api.webhook(event, body, { delivery: guid })).status;
});

/** GitHub delivering a push to the API (again, when given its guid); the event's guid. */
const deliver = async (body: object, guid?: string, redelivery = false) =>
  (await hook.deliver('push', JSON.stringify(body), guid, redelivery)).guid;
/** An attempt GitHub lists, answered `statusCode` by the API (0: no answer), made `at`. */
const record = (guid: string, statusCode: number, body: object, at = new Date()) =>
  hook.record({
    guid,
    status_code: statusCode,
    event: 'push',
    redelivery: false,
    body: JSON.stringify(body),
    delivered_at: at.toISOString(),
  });
/** A push to a branch of a repo the service builds. */
const push = (branch: string, sha: string) => payloads.push('oca/web', branch, SHA(sha));

beforeAll(async () => {
  reporting = await startReportingStack({
    RUNBOAT_REDELIVER_WEBHOOKS: `${HOOK},${OTHER_HOOK}`,
    RUNBOAT_GITHUB_DEPLOYMENTS: 'false',
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'true',
  });
  ({ github, stack, config } = reporting);
  github.serve((call) => hook.answer(call.method, call.path, github.url));
  github.serve((call) => {
    if (call.method !== 'GET' || !call.path.startsWith(`/${OTHER_HOOK}/deliveries`)) return undefined;
    return tokenLacksRight
      ? { status: 403, body: { message: 'Resource not accessible by personal access token' } }
      : { status: 200, body: [] };
  });
});
afterAll(() => reporting?.close());

const commit = (branch: string, sha: string): CommitInfo => ({
  repo: 'oca/web',
  target_branch: branch,
  pr: null,
  git_commit: SHA(sha),
});
const buildExists = (of: CommitInfo) =>
  stack.temporal.client.workflow
    .getHandle(buildWorkflowId(buildRef(of).name))
    .describe()
    .then(() => true)
    .catch(() => false);
const attemptsOf = (guid: string) => hook.attemptsOf(guid);

/**
 * Runs the schedule once, as its interval would, and returns what that run did. Allowed to
 * overlap: the scheduler may not have seen the last run end yet, and would skip it (no run of
 * this file's overlaps another: each waits for the one before).
 */
async function runTheSchedule(): Promise<WebhookRedelivery> {
  const { client } = stack.temporal;
  const scheduleId = webhookRedeliveryScheduleId(config);
  const before = await lastScheduledResult<WebhookRedelivery>(client, scheduleId);
  await client.schedule.getHandle(scheduleId).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
  return waitFor('the run finished', async () => {
    const result = await lastScheduledResult<WebhookRedelivery>(client, scheduleId);
    return result?.listedTo !== before?.listedTo && result;
  });
}

/** Runs the schedule once, as `runTheSchedule`, for a run that fails; its workflow's handle. */
async function runTheScheduleToFailure(): Promise<WorkflowHandle> {
  const { client } = stack.temporal;
  const schedule = client.schedule.getHandle(webhookRedeliveryScheduleId(config));
  const newestRun = async () => (await schedule.describe()).info.recentActions.at(-1)!.action.workflow;
  const before = await newestRun();
  await schedule.trigger(ScheduleOverlapPolicy.ALLOW_ALL);
  return waitFor('the run failed', async () => {
    // Runs of the same second share a workflow id: a new run is told by its run id.
    const run = await newestRun();
    if (run.firstExecutionRunId === before.firstExecutionRunId) return false;
    const handle = client.workflow.getHandle(run.workflowId, run.firstExecutionRunId);
    return (await handle.describe()).status.name === 'FAILED' && handle;
  });
}

it('asks GitHub again for the events the API failed to take, and for no other', async () => {
  // More than a page of events the API took (pushes of a repo it does not build: 200, ignored).
  for (let at = 0; at < 120; at++) await deliver(payloads.push('acme/web', '16.0', SHA('e')));
  // A push while the API was down.
  apiDown = true;
  const missed = await deliver(push('16.0', '1'));
  apiDown = false;
  // One the API could not take (503: Temporal unreachable), one it refused (401: a bad signature),
  // one it could not take and GitHub was already asked again for, and the API took then.
  record('unavailable', 503, push('13.0', '3'));
  record('refused', 401, push('14.0', '4'));
  record('mended', 503, push('15.0', '5'));
  await deliver(push('15.0', '5'), 'mended', true);
  // One the API took, sent again by hand later while it was down: taken already.
  const taken = await deliver(push('10.0', '8'));
  apiDown = true;
  await deliver(push('10.0', '8'), taken, true);
  apiDown = false;
  // And one missed two hours ago: before the hour the first run looks back on.
  record('long ago', 0, push('12.0', '6'), new Date(Date.now() - 2 * 3_600_000));

  await ensureWebhookRedeliverySchedule(stack.temporal.client, config);
  // Only the runs the tests trigger (a paused schedule still takes those): a run the schedule
  // took on its own, every 5 minutes of the clock, would take the answers GitHub had for a test's.
  await stack.temporal.client.schedule
    .getHandle(webhookRedeliveryScheduleId(config))
    .pause('the tests trigger its runs');
  const first = await runTheSchedule();
  expect(first).toMatchObject({ listed: 127, redelivered: 2, refused: 0 });
  // GitHub sent both again, and the API took them: their builds are there.
  await waitFor(
    'the missed builds',
    async () => (await buildExists(commit('16.0', '1'))) && (await buildExists(commit('13.0', '3'))),
  );
  expect(attemptsOf(missed).map((each) => each.status_code)).toEqual([0, 200]);
  expect(attemptsOf('unavailable').map((each) => each.status_code)).toEqual([503, 200]);
  for (const guid of ['refused', 'mended', 'long ago', taken])
    expect(attemptsOf(guid), guid).toHaveLength(guid === 'mended' || guid === taken ? 2 : 1);
  expect(await buildExists(commit('14.0', '4'))).toBe(false);
  // /metrics tells what the last run asked again.
  expect(metricSample(await scrapeMetrics(stack.api), 'runboat_webhook_events_redelivered')).toBe(2);
});

it('asks again at each run while the API stays down, and nothing it took since', async () => {
  apiDown = true;
  const during = await deliver(push('11.0', '7'));
  expect(await runTheSchedule()).toMatchObject({ redelivered: 1 });
  await waitFor('the attempt made', async () => attemptsOf(during).length === 2);
  apiDown = false;
  expect(await runTheSchedule()).toMatchObject({ redelivered: 1 });
  await waitFor('its build', () => buildExists(commit('11.0', '7')));
  expect(attemptsOf(during).map((each) => each.status_code)).toEqual([0, 0, 200]);
  expect(await runTheSchedule()).toMatchObject({ redelivered: 0 });

  // A run's history is kept as a release's fixture.
  const { client } = stack.temporal;
  const { recentActions } = (await client.schedule.getHandle(webhookRedeliveryScheduleId(config)).describe())
    .info;
  const { workflow } = recentActions[recentActions.length - 1].action;
  await replayAndRecord(
    'webhook-redelivery.json',
    await client.workflow.getHandle(workflow.workflowId, workflow.firstExecutionRunId).fetchHistory(),
  );
});

it('lists from where the last finished run listed to, across a run GitHub failed', async () => {
  const { client } = stack.temporal;
  const finished = await lastScheduledResult<WebhookRedelivery>(client, webhookRedeliveryScheduleId(config));
  // GitHub fails the listing (each of the activity's three attempts): the run fails.
  github.answerNext(
    3,
    { status: 502, body: { message: 'Server Error' } },
    (call) => call.method === 'GET' && call.path.startsWith(`/${HOOK}/deliveries`),
  );
  await runTheScheduleToFailure();
  // A push missed meanwhile is asked for by the next run, which lists from the last finished one.
  apiDown = true;
  const missed = await deliver(push('17.0', '9'));
  apiDown = false;
  const next = await runTheSchedule();
  expect(next.listedFrom).toBe(new Date(Date.parse(finished!.listedTo) - 2 * 60_000).toISOString());
  expect(next.redelivered).toBe(1);
  await waitFor('its build', () => buildExists(commit('17.0', '9')));
  expect(attemptsOf(missed).map((each) => each.status_code)).toEqual([0, 200]);
});

it("fails the run for good, naming the webhook, when GitHub will not list one's deliveries", async () => {
  const { client } = stack.temporal;
  const finished = await lastScheduledResult<WebhookRedelivery>(client, webhookRedeliveryScheduleId(config));
  apiDown = true;
  const missed = await deliver(push('18.0', 'a'));
  apiDown = false;
  tokenLacksRight = true;
  const failure = await (await runTheScheduleToFailure()).result().then(
    () => undefined,
    (error: unknown) => error as WorkflowFailedError,
  );
  // The workflow's failure is the activity's, caused by the activity's own.
  expect(String((failure?.cause?.cause as Error | undefined)?.message)).toContain(
    `GitHub refused to list the deliveries of ${OTHER_HOOK} (HttpError: Resource not accessible by personal access token): check RUNBOAT_REDELIVER_WEBHOOKS`,
  );
  // The other webhook's missed event was asked for all the same.
  await waitFor('its build', () => buildExists(commit('18.0', 'a')));
  expect(attemptsOf(missed).map((each) => each.status_code)).toEqual([0, 200]);
  // Mended, the next run lists from the last finished one.
  tokenLacksRight = false;
  const next = await runTheSchedule();
  expect(next.listedFrom).toBe(new Date(Date.parse(finished!.listedTo) - 2 * 60_000).toISOString());
});

it('removes the schedule when no webhook is named', async () => {
  const { client } = stack.temporal;
  await ensureWebhookRedeliverySchedule(client, { ...config, redeliverWebhooks: [] });
  await expect(client.schedule.getHandle(webhookRedeliveryScheduleId(config)).describe()).rejects.toThrow();
  // And again, with none to remove.
  await ensureWebhookRedeliverySchedule(client, { ...config, redeliverWebhooks: [] });
});
