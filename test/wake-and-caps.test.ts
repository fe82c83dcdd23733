import http from 'node:http';
import { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { getBuildState, startBuild } from '../api/build-client';
import type { BuildRef, BuildStatus, CommitInfo } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import { metricSample, payloads, scrapeMetrics, startTestApi, useStack } from './api-server';
import { FRESH_FOR_MS } from '../common/build-index';
import { SHA, testConfig, waitFor } from './helpers';

// Wake on visit, visits, forced undeploy and per-ref caps, over HTTP against the real stack:
// requests carry real Host headers, as the ingress controller forwards them.

const config = testConfig({
  RUNBOAT_API_ADMIN_PASSWD: 's3cret',
  RUNBOAT_BASE_URL: 'https://runboat.example.org',
  RUNBOAT_MAX_BUILDS_PER_REF: '2',
});
const stack = useStack(config);

const commit = (branch: string, pr: number | null, sha: string): CommitInfo => ({
  repo: 'oca/web',
  target_branch: branch,
  pr,
  git_commit: SHA(sha),
});
const state = (build: BuildRef | string) =>
  getBuildState(stack.temporal.client, typeof build === 'string' ? build : build.name);
const reach = (build: BuildRef, status: BuildStatus) =>
  waitFor(
    `${build.name} ${status}`,
    async () => (await state(build)).status === status && (await state(build)),
  );
const ended = (name: string) =>
  waitFor(`${name} ended`, async () => {
    const { status } = await stack.temporal.client.workflow.getHandle(buildWorkflowId(name)).describe();
    return status.name === 'COMPLETED';
  });

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** What a browser sends when a person opens an address (Firefox 133's headers). */
const A_PERSON_OPENING = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
};

/**
 * A request with the Host header a browser sends (fetch would not let a test set it): by
 * default the headers of a person opening the address, which `headers` replace one by one
 * (or leave out, set to '').
 */
function request(
  path: string,
  host: string,
  headers: Record<string, string> = {},
  apiUrl = stack.api.url,
  method = 'GET',
): Promise<Answer> {
  const { port } = new URL(apiUrl);
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method,
        headers: withoutEmpty({ host, ...A_PERSON_OPENING, ...headers }),
      },
      (response) => {
        if (response.headers['content-type']?.startsWith('text/event-stream')) {
          // A stream never ends: its head and first chunk are the answer.
          response.once('data', (chunk: Buffer) => {
            resolve({ status: response.statusCode ?? 0, headers: response.headers, body: chunk.toString() });
            outgoing.destroy();
          });
          return;
        }
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    outgoing.on('error', reject);
    outgoing.end();
  });
}

/** `headers` without those set to '': a test's way to leave out a header a browser sends. */
function withoutEmpty(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([, value]) => value !== ''));
}

async function startedBuild(sha: string, pr: number | null = 7): Promise<BuildRef> {
  const build = await startBuild(stack.temporal.client, config, commit('16.0', pr, sha));
  await stack.cluster.finishJob(build.name, 'initialize', true);
  await reach(build, 'started');
  return build;
}

async function stoppedBuild(sha: string, pr: number | null = 7): Promise<BuildRef> {
  const build = await startedBuild(sha, pr);
  expect((await stack.api.request('POST', `/api/v1/builds/${build.name}/stop`)).status).toBe(200);
  await reach(build, 'stopped');
  return build;
}

describe('wake on visit', () => {
  it('starts a stopped build requested on its host and serves the live page, which reloads the address', async () => {
    const build = await stoppedBuild('a', 11);
    const answer = await request('/web?debug=1', `${build.slug}.runboat.test`);
    expect(answer.status).toBe(503);
    expect(answer.headers['retry-after']).toBe('5');
    expect(answer.headers['content-security-policy']).toContain("script-src 'self'");
    expect(answer.body).toContain(`data-build="${build.name}"`);
    expect(answer.body).toContain('data-reload="true"');
    expect(answer.body).toContain('src="/ui/live.js"');
    // Links lead back to this service, not to the build's host.
    expect(answer.body).toContain(`href="https://runboat.example.org/builds/${build.name}"`);
    await reach(build, 'started');
    // The visit is recorded: it postpones the idle stop.
    expect((await state(build)).last_visited).toEqual(expect.any(String));
  });

  it('leaves a stopped build stopped for what is not a person opening it, and asks crawlers to keep away', async () => {
    const build = await stoppedBuild('9', 18);
    const host = `${build.slug}.runboat.test`;
    const notPeople: Array<[string, Record<string, string>, string?]> = [
      [
        'a crawler',
        { 'user-agent': 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)' },
      ],
      ['a chat unfurler', { 'user-agent': 'Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)' }],
      ['curl', { 'user-agent': 'curl/8.5.0', accept: '*/*', 'sec-fetch-mode': '' }],
      ["an open tab's websocket", { 'sec-fetch-mode': 'websocket', 'x-original-uri': '/websocket' }],
      ["an open tab's call", { 'sec-fetch-mode': 'cors', 'x-original-uri': '/web/dataset/call_kw' }, 'POST'],
      ['a link checker', {}, 'HEAD'],
    ];
    const openings = async (by: string) =>
      metricSample(await scrapeMetrics(stack.api), `runboat_stopped_build_openings_total{by="${by}"}`) ?? 0;
    const [others, people] = [await openings('other'), await openings('person')];
    for (const [who, headers, method] of notPeople) {
      const answer = await request('/', host, headers, stack.api.url, method);
      expect([answer.status, answer.headers['retry-after']], who).toEqual([503, '3600']);
      expect(answer.headers['x-robots-tag'], who).toBe('noindex, nofollow');
      if (method !== 'HEAD') {
        expect(answer.body, who).toContain('This build is stopped.');
        expect(answer.body, who).toContain('<button id="live-start"');
      }
    }
    const robots = await request('/robots.txt', host, { 'user-agent': 'Googlebot/2.1' });
    expect([robots.status, robots.body]).toEqual([200, 'User-agent: *\nDisallow: /\n']);
    // The handler sends a start before it answers: none was sent.
    expect(await state(build)).toMatchObject({ status: 'stopped', pending_commands: [] });
    expect(await openings('other')).toBe(others + notPeople.length);

    // A person's visit then starts it, and is the visit recorded: none of the requests above
    // recorded one (this API process would have let no other through for a minute).
    const personCame = Date.now();
    expect((await request('/', host)).status).toBe(503);
    expect(await openings('person')).toBe(people + 1);
    await reach(build, 'started');
    const visited = await waitFor('the visit', async () => (await state(build)).last_visited);
    expect(Date.parse(visited ?? ''), 'the visit recorded is the person’s').toBeGreaterThanOrEqual(
      personCame,
    );
  });

  it('answers on the mail host too', async () => {
    const build = await stoppedBuild('b', 12);
    const answer = await request('/', `${build.slug}.mail.runboat.test:80`);
    expect(answer.status).toBe(503);
    expect(answer.body).toContain(`data-build="${build.name}"`);
    await reach(build, 'started');
  });

  it("serves the page's script and the build's events through ingress-nginx's error backend", async () => {
    const build = await startedBuild('c', 13);
    const host = `${build.slug}.runboat.test`;
    const nginx = (uri: string) => request('/', host, { 'x-code': '503', 'x-original-uri': uri });
    const script = await nginx('/ui/live.js');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toContain('javascript');
    expect(script.body).toContain('followBuildEvents');
    const events = await nginx(`/api/v1/build-events?build_name=${build.name}`);
    expect(events.status).toBe(200);
    expect(events.headers['content-type']).toContain('text/event-stream');
    const page = await nginx('/some/odoo/page');
    expect(page.status).toBe(503);
    expect(page.body).toContain('data-reload="true"');
  });

  it('says when the build failed, with its init log', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('16.0', 14, 'd'));
    await stack.cluster.finishJob(build.name, 'initialize', false);
    await reach(build, 'failed');
    const answer = await request('/', `${build.slug}.runboat.test`);
    expect(answer.body).toContain('This build failed to initialize');
    expect(answer.body).toContain(`href="https://runboat.example.org/api/v1/builds/${build.name}/init-log"`);
    expect((await state(build)).status).toBe('failed');
  });

  it('answers 404 for a host that is no build, and leaves other hosts to the API', async () => {
    const unknown = await request('/', 'oca-web-16-0-pr99-000000000000.runboat.test');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('No build is deployed at');
    // Hosts are looked up in the build index, not by a visibility query each: a crawl of
    // hosts costs the index's reads (at most one per interval, two or three lists each).
    const client = new Client({
      connection: stack.temporal.client.connection,
      namespace: config.temporalNamespace,
    });
    let lists = 0;
    const list = client.workflow.list.bind(client.workflow);
    client.workflow.list = (options) => {
      lists++;
      return list(options);
    };
    const api = await startTestApi(config, client, stack.cluster);
    try {
      await api.request('GET', '/api/v1/status'); // its first list of every build
      const [from, began] = [lists, Date.now()];
      for (let i = 0; i < 40; i++) {
        const host = `oca-web-16-0-pr${100 + i}-000000000000.runboat.test`;
        expect((await request(`/page-${i}`, host, {}, api.url)).status).toBe(404);
      }
      const reads = Math.ceil((Date.now() - began) / FRESH_FOR_MS) + 2;
      expect(lists - from, `visibility lists for 40 visits (${reads} reads at most)`).toBeLessThanOrEqual(
        3 * reads,
      );
    } finally {
      await api.close();
    }
    const own = await request('/healthz', 'runboat.example.org');
    expect(own.status).toBe(200);
    const other = await request('/healthz', 'localhost');
    expect(other.status).toBe(200);
  });
});

describe('visits', () => {
  it('POST /builds/{name}/visit records a visit, at most one a minute per build', async () => {
    const build = await startedBuild('e', 15);
    const visit = () => stack.api.request('POST', `/api/v1/builds/${build.name}/visit`);
    expect((await visit()).status).toBe(204);
    const first = await waitFor('the visit', async () => (await state(build)).last_visited);
    expect((await visit()).status).toBe(204);
    const signals = async () =>
      (
        (await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).fetchHistory()).events ??
        []
      ).filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'visited').length;
    expect(await signals()).toBe(1);
    expect((await state(build)).last_visited).toBe(first);
    expect((await stack.api.request('POST', '/api/v1/builds/no-such-build/visit')).status).toBe(404);
  });
});

describe('forced undeploy', () => {
  it('is for admins, and ends a build whose cleanup job keeps failing', async () => {
    const build = await startedBuild('f', 16);
    const path = `/api/v1/builds/${build.name}?force=true&reason=${encodeURIComponent('dropdb keeps failing')}`;
    expect((await stack.api.request('DELETE', path)).status).toBe(401);

    expect((await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true })).status).toBe(
      200,
    );
    await stack.cluster.finishJob(build.name, 'cleanup', false);
    await waitFor('the failed cleanup noted', async () =>
      (await state(build)).last_error?.includes('cleanup job failed'),
    );
    // A plain undeploy asks for what is under way (answered as done); forcing is what is left.
    expect((await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true })).status).toBe(
      200,
    );
    expect((await state(build)).status).toBe('undeploying');
    expect((await stack.api.request('DELETE', path, { admin: true })).status).toBe(200);
    await ended(build.name);
    expect(await stack.cluster.deployment(build.name)).toBeUndefined();
    const history = await stack.temporal.client.workflow
      .getHandle(buildWorkflowId(build.name))
      .fetchHistory();
    const signal = history.events?.find(
      (e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'forceUndeploy',
    );
    const input = signal?.workflowExecutionSignaledEventAttributes?.input?.payloads?.[0]?.data;
    expect(Buffer.from(input ?? []).toString()).toContain('dropdb keeps failing');
  });
});

describe('RUNBOAT_MAX_BUILDS_PER_REF', () => {
  it('undeploys the oldest builds of a pull request beyond the cap as soon as a new one starts', async () => {
    const names: string[] = [];
    for (const sha of ['1', '2', '3']) {
      const response = await stack.api.webhook(
        'pull_request',
        payloads.pullRequest('synchronize', 'oca/web', 21, '16.0', SHA(sha)),
      );
      expect(response.status).toBe(200);
      names.push(((await response.json()) as { builds: string[] }).builds[0]);
      // Let visibility list the build, as it would between two pushes.
      await waitFor(`${names.at(-1)} listed`, async () => {
        const listed = (await (await stack.api.request('GET', '/api/v1/builds?pr=21')).json()) as unknown[];
        return listed.length >= names.length;
      });
    }
    const [oldest, middle, newest] = names;
    await waitFor('the oldest build undeploying', async () => {
      const s = await state(oldest);
      return s.status === 'undeploying' || s.pending_commands.includes('undeploy');
    });
    for (const name of [middle, newest]) {
      const s = await state(name);
      expect(s.status).not.toBe('undeploying');
      expect(s.pending_commands).not.toContain('undeploy');
    }
    // Other refs are not touched: a branch build of the same repo stays.
    const branch = await startBuild(stack.temporal.client, config, commit('16.0', null, '4'));
    expect((await state(branch)).pending_commands).not.toContain('undeploy');
  });

  it('counts the build just started even before visibility lists it', async () => {
    const first = await startBuild(stack.temporal.client, config, commit('17.0', 31, '5'));
    const second = await startBuild(stack.temporal.client, config, commit('17.0', 31, '6'));
    await waitFor('both listed', async () => {
      const listed = (await (await stack.api.request('GET', '/api/v1/builds?pr=31')).json()) as unknown[];
      return listed.length === 2;
    });
    // The third is not listed when its own start applies the cap: the first must go all the same.
    const third = await startBuild(stack.temporal.client, config, commit('17.0', 31, '7'));
    await waitFor('the first build told to undeploy', async () => {
      const s = await state(first);
      return s.status === 'undeploying' || s.pending_commands.includes('undeploy');
    });
    expect((await state(second)).pending_commands).not.toContain('undeploy');
    expect((await state(third)).pending_commands).not.toContain('undeploy');
  });
});
