import { createHmac } from 'node:crypto';
import { status as grpcStatus } from '@grpc/grpc-js';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { apiConnectionOptions } from '../api/backend';
import { buildRef } from '../common/build';
import { SERVICE_ROUTES, send, type HostileRequest } from '../scripts/fuzz-cases';
import { payloads, startTestApi, type TestApi } from './api-server';
import { SHA, TestCluster, testConfig, waitFor } from './helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

// With Temporal unreachable, every endpoint still answers within GitHub's 10 s (a webhook
// delivery that takes longer is recorded as failed): 503 where it needs Temporal, never a hang.
// The API runs with its production deadline, not a test's shorter one.

const GITHUB_TIMEOUT_MS = 10_000;
const secret = 'outage-secret';
const config = testConfig({
  RUNBOAT_GITHUB_WEBHOOK_SECRET: secret,
  RUNBOAT_API_ADMIN_USER: 'admin',
  RUNBOAT_API_ADMIN_PASSWD: 'outage-admin',
});
const cluster = new TestCluster(config.buildNamespace);
let proxy: TcpProxy;
let connection: Connection;
let api: TestApi;

beforeAll(async () => {
  await cluster.createNamespace();
  proxy = await startTcpProxy(config.temporalAddress);
  connection = await Connection.connect(apiConnectionOptions(proxy.address));
  api = await startTestApi(config, new Client({ connection, namespace: config.temporalNamespace }), cluster);
});

afterAll(async () => {
  await api?.close();
  await connection?.close();
  await proxy?.close();
});

/** A well-formed request for each route: what would reach Temporal if it were there. */
function wellFormedRequests(): HostileRequest[] {
  const commit = { repo: 'oca/outage', target_branch: '16.0', pr: null, git_commit: SHA('a') };
  const { name, slug } = buildRef(commit);
  const admin = `Basic ${Buffer.from('admin:outage-admin').toString('base64')}`;
  const queries: Record<string, string> = {
    '/api/v1/builds/trigger/branch': '?repo=oca/outage&branch=16.0',
    '/api/v1/builds/trigger/pr': '?repo=oca/outage&pr=1',
    '/api/v1/builds': '?repo=oca/outage',
    '/webui/build.html': `?name=${name}`,
  };
  const routes = [
    ...api.routes.map(({ method, path }) => ({ method, path: `/api/v1${path}` })),
    ...SERVICE_ROUTES.filter(({ path }) => path !== '/webhooks/github'),
  ];
  const requests: HostileRequest[] = routes.map(({ method, path }) => ({
    kind: 'well-formed',
    route: `${method.toUpperCase()} ${path}`,
    method: method.toUpperCase(),
    path: path.replace('{name}', name) + (queries[path] ?? ''),
    headers: { authorization: admin },
    dropAfterMs: 0,
  }));
  const webhook = (event: string, payload: object): HostileRequest => {
    const body = Buffer.from(JSON.stringify(payload));
    const signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    return {
      kind: `${event} webhook`,
      route: 'POST /webhooks/github',
      method: 'POST',
      path: '/webhooks/github',
      headers: {
        'content-type': 'application/json',
        'x-github-event': event,
        'x-hub-signature-256': signature,
      },
      body,
    };
  };
  return [
    ...requests,
    { ...requests[0], kind: 'live page', route: 'GET /builds/{name}?live', path: `/builds/${name}?live` },
    {
      ...requests[0],
      kind: 'wake',
      route: 'GET / (build host)',
      path: '/',
      headers: { host: `${slug}.${config.buildDomain}` },
    },
    webhook('push', payloads.push('oca/outage', '16.0', SHA('b'))),
    webhook('push', payloads.push('oca/outage', '16.0', SHA('b'), true)),
    webhook('pull_request', payloads.pullRequest('opened', 'oca/outage', 1, '16.0', SHA('c'))),
    webhook('pull_request', payloads.pullRequest('closed', 'oca/outage', 1, '16.0', SHA('c'))),
    webhook('delete', { ref: '16.0', ref_type: 'branch', repository: { full_name: 'oca/outage' } }),
  ];
}

it('answers 503 with a Retry-After while Temporal is slow to list the builds, and the list once it came', async () => {
  proxy.hold();
  try {
    const refused = await fetch(`${api.url}/api/v1/repos`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(((await refused.json()) as { detail: string }).detail).toMatch(/did not list the builds in time/);
  } finally {
    proxy.release();
  }
  // The list went on: asked again, the API answers from it.
  await waitFor('the builds listed', async () => (await fetch(`${api.url}/api/v1/repos`)).ok);
}, 60_000);

it("every endpoint answers within GitHub's 10 s while Temporal is unreachable", async () => {
  // An API whose build index has never read visibility: `api`'s answered the test above, and
  // answers from a read less than 400 ms old without asking Temporal (build-index.ts).
  const client = new Client({ connection, namespace: config.temporalNamespace });
  const unlisted = await startTestApi(config, client, cluster);
  proxy.cut();
  const outcomes = await Promise.all(
    wellFormedRequests().map((request) => send(unlisted.url, request, GITHUB_TIMEOUT_MS)),
  ).finally(() => unlisted.close());
  const answers = outcomes.map(({ request, status }) => `${request.route} (${request.kind}): ${status}`);
  const late = outcomes.filter(
    ({ status }) => typeof status !== 'number' || (status >= 500 && status !== 503),
  );
  expect(late.map(({ request, status }) => `${request.route} (${request.kind}): ${status}`)).toEqual([]);
  // The ones that need Temporal said so.
  expect(answers).toContain('POST /webhooks/github (push webhook): 503');
  expect(answers).toContain('GET /api/v1/status (well-formed): 503');
}, 120_000);

it('ends a call whose retry waits when the connection closes, instead of throwing from the retry', async () => {
  const unreachable = await startTcpProxy(config.temporalAddress);
  try {
    const closing = await Connection.connect(apiConnectionOptions(unreachable.address));
    unreachable.cut();
    // No deadline: the SDK retries an unavailable server from a timer, up to 10 times.
    const call = closing.workflowService.getSystemInfo({});
    await closing.close();
    await expect(call).rejects.toMatchObject({
      code: grpcStatus.CANCELLED,
      details: expect.stringMatching(/connection closed/),
    });
  } finally {
    await unreachable.close();
  }
});
