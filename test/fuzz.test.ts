import { expect, it } from 'vitest';
import {
  buildWorkflowIds,
  fuzzedGitHubApp,
  hostileRequests,
  sendAll,
  streamBurst,
  violations,
  type FuzzTarget,
  type Outcome,
} from '../scripts/fuzz-cases';
import { buildWorkflowId } from '../workflows/definitions';
import { useStack } from './api-server';
import { testConfig, waitFor } from './helpers';

// `npm run fuzz` in small: the same generator, a few hundred hostile requests against the API
// of a test stack, and the same invariants but RSS (measured by the full run only).

const REQUESTS = 300;
const STREAMS = 40;
const SEED = Number(process.env.FUZZ_SEED ?? 7);

const secrets = { webhookSecret: 'fuzz-secret', adminUser: 'admin', adminPassword: 'fuzz-admin' };
const config = testConfig({
  RUNBOAT_GITHUB_WEBHOOK_SECRET: secrets.webhookSecret,
  RUNBOAT_API_ADMIN_USER: secrets.adminUser,
  RUNBOAT_API_ADMIN_PASSWD: secrets.adminPassword,
  ...fuzzedGitHubApp(),
});
const stack = useStack(config);

const shown = (outcome: Outcome) =>
  `${outcome.status} ${outcome.request.method} ${outcome.request.path.slice(0, 100)} (${outcome.request.kind}) ${outcome.excerpt ?? ''}`;

it('answers hostile requests with no 5xx but 503, and starts only the builds valid webhooks ask for', async () => {
  const { api, temporal } = stack;
  const target: FuzzTarget = {
    ...secrets,
    routes: api.routes.map(({ method, path }) => ({ method, path: `/api/v1${path}` })),
    repo: 'oca/fuzz',
    branch: '16.0',
    buildDomain: config.buildDomain,
  };
  const before = await buildWorkflowIds(temporal.client, config.taskQueue);
  const [outcomes, burst] = await Promise.all([
    sendAll(api.url, hostileRequests(SEED, REQUESTS, target), 8),
    streamBurst(api.url, STREAMS),
  ]);
  // Visibility lags a start: wait for every build the valid webhooks said they started.
  const started = outcomes.flatMap((outcome) => outcome.builds ?? []);
  const after = await waitFor('the started builds listed', async () => {
    const ids = await buildWorkflowIds(temporal.client, config.taskQueue);
    return started.every((name) => ids.has(buildWorkflowId(name))) && ids;
  });
  const newBuilds = [...after].filter((id) => !before.has(id)).map((id) => id.replace(/^build-/, ''));
  const found = violations([...outcomes, ...burst], newBuilds);

  expect(found.failures.map(shown)).toEqual([]);
  expect(found.unexpectedBuilds).toEqual([]);
  // The run did reach the service: the valid webhooks started builds, and streams were served.
  expect(started.length).toBeGreaterThan(0);
  expect(burst.filter((outcome) => outcome.status === 200).length).toBe(STREAMS);
  expect((await api.request('GET', '/healthz')).status).toBe(200);
}, 120_000);

it('counts webhooks of events GitHub does not send under one "other" label, whatever their name', async () => {
  const { api } = stack;
  const events = ['made-up-1', 'made-up-2', 'x'.repeat(500)];
  for (const event of events) expect((await api.webhook(event, {}, { signature: null })).status).toBe(401);
  const metrics = await (await api.request('GET', '/metrics')).text();
  for (const event of events) expect(metrics).not.toContain(event);
  expect(metrics).toMatch(/runboat_webhooks_total\{event="other",outcome="rejected"\} [1-9]/);
});

it('refuses commands to names no build can have before their rate limit, which remembers none of them', async () => {
  const { api } = stack;
  // More than a build's burst (10): had they taken tokens, the last would be 429s.
  const statuses = [];
  for (let i = 0; i < 15; i++)
    statuses.push((await api.request('POST', '/api/v1/builds/NOT-A-NAME/start')).status);
  expect(new Set(statuses)).toEqual(new Set([400]));
});
