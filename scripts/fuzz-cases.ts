import { createHmac } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import type { Client } from '@temporalio/client';
import { buildRef } from '../common/build';
import { buildWorkflowsQuery } from '../common/search-attributes';
import { newGitHubAppKey } from './github-app-key';

// The hostile requests of `npm run fuzz` and of its fast version in `npm test`: one generator,
// deterministic for a seed, over every route it is given. Each request is either hostile (bad
// JSON, huge or deeply nested bodies, unicode, path traversal, malformed percent-encoding, bad
// query values, wrong methods, bad credentials and signatures, odd Host headers) or one of the
// few valid signed webhooks it sends on purpose, which alone may start a build.

/** A route as the OpenAPI document writes it: `{name}` for a path parameter. */
export interface RouteSpec {
  method: string;
  path: string;
}

export interface HostileRequest {
  /** What it abuses, for the table. */
  kind: string;
  /** The route it aims at (`GET /api/v1/builds/{name}`), to group latencies. */
  route: string;
  method: string;
  /** Path and query, as sent on the request line (not normalised). */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Build events opened and dropped after this many milliseconds. */
  dropAfterMs?: number;
  /** The build a valid signed webhook starts: nothing else may start one. */
  starts?: string;
}

/** The GitHub App the fuzzed service acts as (id 1), with check runs: their Re-runs are fuzzed too. */
export function fuzzedGitHubApp(): Record<string, string> {
  return {
    RUNBOAT_GITHUB_APP_ID: '1',
    RUNBOAT_GITHUB_APP_PRIVATE_KEY: newGitHubAppKey(),
    RUNBOAT_GITHUB_CHECK_RUNS: 'true',
    // Nothing is reported: GitHub is nowhere here.
    RUNBOAT_GITHUB_DEPLOYMENTS: 'false',
  };
}

export interface FuzzTarget {
  /** The API's routes (from the app or its OpenAPI document), `/api/v1` included. */
  routes: RouteSpec[];
  webhookSecret: string;
  adminUser: string;
  adminPassword: string;
  /** A repo and target branch the service builds: the valid webhooks' commits. */
  repo: string;
  branch: string;
  /** RUNBOAT_BUILD_DOMAIN: Host headers of build hosts reach the wake handler. */
  buildDomain: string;
}

/** The routes outside `/api/v1`: probes, webhooks and the Web UI. */
export const SERVICE_ROUTES: RouteSpec[] = [
  { method: 'get', path: '/healthz' },
  { method: 'get', path: '/readyz' },
  { method: 'get', path: '/metrics' },
  { method: 'post', path: '/webhooks/github' },
  { method: 'get', path: '/' },
  { method: 'get', path: '/status' },
  { method: 'get', path: '/builds' },
  { method: 'get', path: '/builds/{name}' },
  { method: 'get', path: '/builds/{name}/timeline.json' },
  { method: 'get', path: '/webui/builds.html' },
  { method: 'get', path: '/webui/build.html' },
  { method: 'get', path: '/ui/{name}' },
];

export const BUILD_EVENTS_PATH = '/api/v1/build-events';

/** mulberry32: small, fast and the same on every run for a seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values no parameter accepts, already as they go on the request line. */
const HOSTILE_VALUES = [
  '',
  '%20',
  '..',
  '../../etc/passwd',
  '..%2f..%2fetc%2fpasswd',
  '%2e%2e%2f%2e%2e%2f',
  '....//....//',
  '%',
  '%zz',
  '%E0%A4%A',
  '%C0%AF',
  '%FF%FE',
  '%00',
  'a%00b',
  '%0d%0aset-cookie:%20x=1',
  encodeURIComponent('ñandú-16.0'),
  encodeURIComponent('🦄'),
  encodeURIComponent('\u202egnp.exe'),
  '%ED%A0%80', // a lone UTF-16 surrogate, UTF-8 encoded: no valid string decodes to it
  '\xe9\xff',
  'x'.repeat(5_000),
  '-leading',
  'trailing-',
  'UPPER-case',
  'a'.repeat(300),
  encodeURIComponent("x' OR WorkflowType != '"),
  encodeURIComponent('"; DROP TABLE builds; --'),
  encodeURIComponent('<script>alert(1)</script>'),
  encodeURIComponent('${jndi:ldap://127.0.0.1/x}'),
  encodeURIComponent('{{7*7}}'),
  '1e309',
  '-1',
  '0',
  '1.5',
  'NaN',
  'Infinity',
  '9'.repeat(400),
  '0x10',
  '[]',
  '{}',
  'null',
  'true',
  '%5C%5C',
  '__proto__',
  'constructor',
];

const QUERY_KEYS = [
  'repo',
  'target_branch',
  'branch',
  'pr',
  'status',
  'build_name',
  'force',
  'reason',
  'name',
  'live',
  '__proto__',
  'constructor[prototype][polluted]',
  'pr[]',
  'repo[x]',
  '',
];

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'PROPFIND', 'TRACE'];

const WEBHOOK_EVENTS = [
  'push',
  'pull_request',
  'delete',
  'check_run',
  'check_suite',
  'ping',
  'issues',
  '',
  'x'.repeat(2_000),
];

let bomb: Buffer | undefined;
/** 20 MiB of zeros in 20 KiB: inflated, far past the webhook's body limit. */
const gzipBomb = () => (bomb ??= gzipSync(Buffer.alloc(20 * 1024 * 1024)));

export function* hostileRequests(seed: number, count: number, target: FuzzTarget): Generator<HostileRequest> {
  const random = seededRandom(seed);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)];
  const chance = (p: number) => random() < p;
  const int = (max: number) => Math.floor(random() * max);
  const routes = [...target.routes, ...SERVICE_ROUTES.filter((r) => !target.routes.includes(r))];
  const sign = (body: Buffer) =>
    `sha256=${createHmac('sha256', target.webhookSecret).update(body).digest('hex')}`;
  const basic = (credentials: string) => `Basic ${Buffer.from(credentials, 'latin1').toString('base64')}`;
  const sha = () => Array.from({ length: 40 }, () => '0123456789abcdef'[int(16)]).join('');

  const hostileValue = () => pick(HOSTILE_VALUES);
  /** A name that looks like a build's, of no running build (the valid ones start with the repo's). */
  const fillName = () => (chance(0.3) ? `nope-${int(1e6)}-16-0-${sha().slice(0, 7)}` : hostileValue());
  const fillPath = (path: string) => path.replace(/\{(\w+)\}/g, () => fillName());
  const query = () => {
    const parts = Array.from({ length: 1 + int(4) }, () => `${pick(QUERY_KEYS)}=${hostileValue()}`);
    if (chance(0.1)) parts.push(parts[0]); // repeated keys: arrays, not strings
    return `?${parts.join('&')}`;
  };
  const badAuthorization = () =>
    pick([
      'Basic',
      'Basic !!!not-base64!!!',
      basic(target.adminUser),
      basic(`${target.adminUser}:wrong`),
      basic(`${target.adminUser}:${target.adminPassword}x`),
      basic(':'),
      basic('\xff\xfe:\x00'),
      `Bearer ${'x'.repeat(100)}`,
      `Basic ${'A'.repeat(6_000)}`,
      'Digest username="admin"',
    ]);

  function webhookPayload(): { event: string; payload: unknown; starts?: string } {
    const number = 1 + int(5);
    const head = '0'.repeat(39) + String(number);
    const pr = (action: string, base = target.branch, headSha = head, prNumber: unknown = number) => ({
      action,
      number: prNumber,
      pull_request: { head: { sha: headSha }, base: { ref: base } },
      repository: { full_name: target.repo },
    });
    const push = (ref: string, after: string) => ({
      ref,
      before: '0'.repeat(40),
      after,
      repository: { full_name: target.repo },
    });
    // Each mutation makes a payload the service must refuse or ignore, never build.
    return pick<() => { event: string; payload: unknown }>([
      () => ({ event: 'pull_request', payload: pr('opened', '../../etc') }),
      () => ({ event: 'pull_request', payload: pr('opened', target.branch, 'not-a-sha') }),
      () => ({ event: 'pull_request', payload: pr('opened', target.branch, 'G'.repeat(40)) }),
      () => ({ event: 'pull_request', payload: pr('opened', target.branch, head, -1) }),
      () => ({ event: 'pull_request', payload: pr('opened', target.branch, head, 1.5) }),
      () => ({ event: 'pull_request', payload: pr('opened', target.branch, head, '1') }),
      () => ({ event: 'pull_request', payload: pr('labeled') }),
      () => ({ event: 'pull_request', payload: pr('opened', `${target.branch}\u0000`) }),
      () => ({ event: 'pull_request', payload: { ...pr('opened'), repository: { full_name: '../..' } } }),
      () => ({ event: 'pull_request', payload: { ...pr('opened'), repository: { full_name: 'ñ/🦄' } } }),
      () => ({ event: 'push', payload: push(`refs/heads/${target.branch}/../x`, sha()) }),
      () => ({ event: 'push', payload: push(`refs/tags/${target.branch}`, sha()) }),
      () => ({ event: 'push', payload: push(`refs/heads/${target.branch}`, `${sha()}; rm -rf /`) }),
      () => ({ event: 'push', payload: push('refs/heads/-x', sha()) }),
      () => ({
        event: 'delete',
        payload: { ref: '../..', ref_type: 'branch', repository: { full_name: target.repo } },
      }),
      // A Re-run of a check run that names no build of the service: ignored, or refused if malformed.
      () => ({
        event: 'check_run',
        payload: {
          action: 'rerequested',
          check_run: { name: 'runboat/build', external_id: fillName(), app: { id: int(3) } },
          repository: { full_name: target.repo },
        },
      }),
      () => ({ event: 'check_run', payload: { action: 'rerequested', check_run: hostileValue() } }),
      () => ({
        event: 'check_suite',
        payload: {
          action: 'rerequested',
          check_suite: { head_sha: chance(0.5) ? sha() : hostileValue(), app: { id: int(3) } },
          repository: { full_name: chance(0.5) ? target.repo : hostileValue() },
        },
      }),
      () => ({ event: 'push', payload: [] }),
      () => ({ event: 'push', payload: null }),
      () => ({ event: 'pull_request', payload: 42 }),
      () => ({ event: 'push', payload: { repository: JSON.parse(nested(1_000)) as unknown } }),
      // Event names are the sender's to choose: each new one must cost the service nothing.
      () => ({
        event: chance(0.5) ? pick(WEBHOOK_EVENTS) : `event-${int(1e9)}`,
        payload: { zen: 'Keep it logically awesome.' },
      }),
    ])();
  }

  /** A valid webhook, signed: a pull request opened (a build) or closed (its undeploy). */
  function validWebhook(): HostileRequest {
    const number = 1 + int(5);
    const headSha = '0'.repeat(39) + String(number);
    const closed = chance(0.3);
    const payload = {
      action: closed ? 'closed' : 'opened',
      number,
      pull_request: { head: { sha: headSha }, base: { ref: target.branch } },
      repository: { full_name: target.repo },
    };
    const body = Buffer.from(JSON.stringify(payload));
    const commit = { repo: target.repo, target_branch: target.branch, pr: number, git_commit: headSha };
    return {
      kind: 'valid signed webhook',
      route: 'POST /webhooks/github',
      method: 'POST',
      path: '/webhooks/github',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'pull_request',
        'x-hub-signature-256': sign(body),
      },
      body,
      starts: closed ? undefined : buildRef(commit).name,
    };
  }

  function webhook(): HostileRequest {
    const base = { route: 'POST /webhooks/github', method: 'POST', path: '/webhooks/github' };
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const variant = int(8);
    if (variant === 0) {
      // Signed right, but what it says cannot start a build.
      const { event, payload } = webhookPayload();
      const body = Buffer.from(JSON.stringify(payload) ?? 'undefined');
      return {
        ...base,
        kind: 'signed hostile payload',
        headers: { ...headers, 'x-github-event': event, 'x-hub-signature-256': sign(body) },
        body,
      };
    }
    if (variant === 1) {
      // Signed right, and not JSON at all.
      const body = hostileBody();
      return {
        ...base,
        kind: 'signed bad body',
        headers: { ...headers, 'x-github-event': 'push', 'x-hub-signature-256': sign(body) },
        body,
      };
    }
    if (variant === 2) {
      // Compressed bodies: garbage, a bomb, or an encoding nobody supports.
      const valid = Buffer.from(JSON.stringify(validWebhookPayloadLike()));
      const [encoding, body] = pick<() => [string, Buffer]>([
        () => ['gzip', gzipSync(valid)],
        () => ['deflate', deflateSync(valid)],
        () => ['br', brotliCompressSync(valid)],
        () => ['gzip', Buffer.from('not gzip at all')],
        () => ['deflate', Buffer.from('not deflate')],
        () => ['br', Buffer.from('not brotli')],
        () => ['gzip', gzipBomb()],
        () => ['compress', valid],
        () => ['x-unknown, gzip', gzipSync(valid)],
      ])();
      return {
        ...base,
        kind: `content-encoding ${encoding}`,
        headers: {
          ...headers,
          'content-encoding': encoding,
          'x-github-event': 'push',
          'x-hub-signature-256': chance(0.5) ? sign(valid) : sign(body),
        },
        body,
      };
    }
    const { event, payload } = webhookPayload();
    const body = chance(0.5) ? Buffer.from(JSON.stringify(payload) ?? '') : hostileBody();
    const signature = pick([
      undefined,
      '',
      'sha256=',
      `sha256=${'0'.repeat(64)}`,
      `sha1=${'0'.repeat(40)}`,
      sign(Buffer.from('another body')),
      `sha256=${'z'.repeat(64)}`,
      'x'.repeat(3_000),
    ]);
    return {
      ...base,
      kind: 'bad signature',
      headers: {
        ...headers,
        'x-github-event': event,
        ...(signature === undefined ? {} : { 'x-hub-signature-256': signature }),
      },
      body,
    };
  }

  /** A push of a branch the service does not build: signed or not, it starts nothing. */
  function validWebhookPayloadLike() {
    return {
      ref: 'refs/heads/not-configured',
      before: sha(),
      after: sha(),
      repository: { full_name: target.repo },
    };
  }

  /** JSON `depth` levels deep, as text: deeper than JSON.stringify itself could write. */
  function nested(depth: number): string {
    const opens = Array.from({ length: depth }, () => (chance(0.5) ? '[' : '{"a":'));
    const closes = opens.map((open) => (open === '[' ? ']' : '}')).reverse();
    return `${opens.join('')}"deep"${closes.join('')}`;
  }

  function hostileBody(): Buffer {
    switch (int(9)) {
      case 0:
        return Buffer.from('{"ref": "refs/heads/x",');
      case 1:
        return Buffer.from('['.repeat(100_000) + ']'.repeat(100_000));
      case 2:
        return Buffer.from(`{"a":"${'x'.repeat(2 * 1024 * 1024)}"}`);
      case 3:
        return Buffer.from(Array.from({ length: 512 }, () => int(256)));
      case 4:
        return Buffer.from('{"ref":"\ud800\udfff🦄\u202e\u0000"}');
      case 5:
        return Buffer.from('\xef\xbb\xbf{}', 'latin1');
      case 6:
        return Buffer.from('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}');
      case 7:
        return Buffer.from(`{"ref":"refs/heads/16.0","repository":${nested(50_000)}}`);
      default:
        return Buffer.alloc(0);
    }
  }

  function streamRequest(): HostileRequest {
    const path = chance(0.6) ? BUILD_EVENTS_PATH : `${BUILD_EVENTS_PATH}${query()}`;
    return {
      kind: 'build events opened and dropped',
      route: `GET ${BUILD_EVENTS_PATH}`,
      method: 'GET',
      path,
      headers: { accept: 'text/event-stream' },
      dropAfterMs: int(2_000),
    };
  }

  function routeRequest(): HostileRequest {
    const route = pick(routes);
    const method = chance(0.7) ? route.method.toUpperCase() : pick(METHODS);
    const routeName = `${route.method.toUpperCase()} ${route.path}`;
    const headers: Record<string, string> = {};
    let kind = 'hostile path or query';
    let path = fillPath(route.path);
    if (chance(0.5)) path += query();
    else if (chance(0.2)) {
      kind = 'traversal';
      path = `${route.path.replace(/\{\w+\}.*$/, '')}${pick(['../../../../etc/passwd', '%2e%2e/%2e%2e/etc/passwd', '..%5c..%5cwindows', '.%00./'])}`;
    }
    if (method !== route.method.toUpperCase()) kind = 'wrong method';
    if (chance(0.25)) {
      headers.authorization = chance(0.3)
        ? basic(`${target.adminUser}:${target.adminPassword}`)
        : badAuthorization();
      if (headers.authorization !== basic(`${target.adminUser}:${target.adminPassword}`)) kind = 'bad auth';
    }
    if (chance(0.1)) {
      kind = 'odd headers';
      Object.assign(
        headers,
        pick([
          { host: `${pick(['nope', 'x'.repeat(70), '..', 'a-b'])}.${target.buildDomain}` },
          { host: `nope.mail.${target.buildDomain}:99999` },
          { host: '' },
          { accept: 'text/plain;q=x, */*;q=-1' },
          { 'accept-encoding': 'br;q=2, gzip;q=0' },
          { 'x-forwarded-for': '999.999.999.999, ::::' },
          { 'content-type': 'application/json; charset=utf-1000' },
          { range: 'bytes=999999999-' },
          { 'if-none-match': '*'.repeat(4_000) },
          { 'x-huge': 'x'.repeat(20_000) },
        ]),
      );
    }
    let body: Buffer | undefined;
    if (method !== 'GET' && method !== 'HEAD' && chance(0.5)) {
      kind = 'hostile body';
      body = hostileBody();
      headers['content-type'] = pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded']);
    }
    // A stream that answers 200 never ends by itself: held briefly, then dropped.
    const dropAfterMs = route.path === BUILD_EVENTS_PATH ? int(500) : undefined;
    return { kind, route: routeName, method, path, headers, body, dropAfterMs };
  }

  for (let i = 0; i < count; i++) {
    const roll = random();
    if (roll < 0.01) yield validWebhook();
    else if (roll < 0.04) yield streamRequest();
    else if (roll < 0.2) yield webhook();
    else yield routeRequest();
  }
}

export interface Outcome {
  request: HostileRequest;
  /** The HTTP status, or what went wrong before one came. */
  status: number | 'timeout' | 'reset' | 'unsendable';
  ms: number;
  /** The body's first bytes, to say what a 5xx was. */
  excerpt?: string;
  /** A valid webhook's answer: the builds it started. */
  builds?: string[];
}

/** No request may take longer: GitHub gives up on a webhook after 10 s; beyond 30 s it hangs. */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Sends one request as written (path and headers not normalised), reading the whole answer, on
 * a connection of its own: when the server closes one (a body it will not read, headers too
 * large), the request that made it do so is the one that sees it.
 */
export function send(
  baseUrl: string,
  request: HostileRequest,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<Outcome> {
  const url = new URL(baseUrl);
  const started = performance.now();
  const done = (status: Outcome['status'], extra: Partial<Outcome> = {}): Outcome => ({
    request,
    status,
    ms: performance.now() - started,
    ...extra,
  });
  return new Promise((resolve) => {
    let outgoing: http.ClientRequest;
    try {
      outgoing = http.request({
        host: url.hostname,
        port: url.port,
        method: request.method,
        path: request.path,
        headers: request.headers,
        agent: false,
      });
    } catch (error) {
      // Node itself refuses to send it (a character it cannot put on the wire): not the API's.
      resolve(done('unsendable', { excerpt: (error as Error).message }));
      return;
    }
    // A deadline for the whole exchange, not for idleness: a stream's keepalives reset the latter.
    const deadline = setTimeout(() => {
      resolve(done('timeout'));
      outgoing.destroy();
    }, timeoutMs);
    outgoing.on('close', () => clearTimeout(deadline));
    outgoing.on('error', (error) => resolve(done('reset', { excerpt: error.message })));
    outgoing.on('response', (response) => {
      const status = response.statusCode ?? 0;
      if (request.dropAfterMs !== undefined && response.headers['content-type'] === 'text/event-stream') {
        // A stream: its answer is the headers; the client then leaves, as a closed tab does.
        const answered = done(status);
        response.resume();
        setTimeout(() => {
          outgoing.destroy();
          resolve(answered);
        }, request.dropAfterMs);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        if (size < 64 * 1024) chunks.push(chunk);
        size += chunk.length;
      });
      response.on('error', () => resolve(done('reset')));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let builds: string[] | undefined;
        if (request.kind === 'valid signed webhook' && status === 200) {
          builds = (JSON.parse(text) as { builds?: string[] }).builds;
        }
        resolve(done(status, { excerpt: status >= 500 ? text.slice(0, 300) : undefined, builds }));
      });
    });
    outgoing.end(request.body);
  });
}

/** Sends `requests` `concurrency` at a time; streams are held open beside them, not in a slot. */
export async function sendAll(
  baseUrl: string,
  requests: Iterable<HostileRequest>,
  concurrency: number,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const streams: Array<Promise<void>> = [];
  const iterator = requests[Symbol.iterator]();
  const lane = async () => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) {
      const request = next.value;
      if (request.dropAfterMs !== undefined) {
        // Held beside the lanes: a stream must not hold a lane up.
        streams.push(send(baseUrl, request).then((outcome) => void outcomes.push(outcome)));
        continue;
      }
      outcomes.push(await send(baseUrl, request));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  await Promise.all(streams);
  return outcomes;
}

/** `count` build-events streams opened together, held until all answered, then all dropped. */
export async function streamBurst(baseUrl: string, count: number): Promise<Outcome[]> {
  const request: HostileRequest = {
    kind: 'build events, concurrent',
    route: `GET ${BUILD_EVENTS_PATH}`,
    method: 'GET',
    path: BUILD_EVENTS_PATH,
    headers: { accept: 'text/event-stream' },
    dropAfterMs: 0,
  };
  const held: http.ClientRequest[] = [];
  const answered = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Outcome>((resolve) => {
          const started = performance.now();
          const outgoing = http.get(`${baseUrl}${BUILD_EVENTS_PATH}`, { headers: request.headers });
          held.push(outgoing);
          const done = (status: Outcome['status']) =>
            resolve({ request, status, ms: performance.now() - started });
          outgoing.setTimeout(REQUEST_TIMEOUT_MS, () => {
            outgoing.destroy();
            done('timeout');
          });
          outgoing.on('error', () => done('reset'));
          outgoing.on('response', (response) => {
            response.resume();
            done(response.statusCode ?? 0);
          });
        }),
    ),
  );
  for (const outgoing of held) outgoing.destroy();
  return answered;
}

/**
 * Whether the server may close the connection on it unanswered: a body it does not read past
 * its limits, or headers past Node's 16 KiB. The kernel then resets a client still writing.
 */
export function oversized(request: HostileRequest): boolean {
  const headerBytes = Object.entries(request.headers).reduce((n, [k, v]) => n + k.length + v.length, 0);
  return (request.body?.length ?? 0) > 64 * 1024 || headerBytes + request.path.length > 16 * 1024;
}

export interface Violations {
  /** 5xx other than 503, timeouts, and resets of requests that were not oversized. */
  failures: Outcome[];
  /** Builds started that no valid webhook asked for. */
  unexpectedBuilds: string[];
}

/**
 * The invariants of a hostile run: every answer is a status below 500 or the documented 503,
 * in time, and the only builds that exist anew are those the valid webhooks started.
 */
export function violations(outcomes: Outcome[], newBuilds: string[]): Violations {
  const allowed = new Set(outcomes.flatMap((outcome) => outcome.request.starts ?? []));
  return {
    failures: outcomes.filter(
      ({ status, request }) =>
        status === 'timeout' ||
        (status === 'reset' && !oversized(request)) ||
        (typeof status === 'number' && status >= 500 && status !== 503),
    ),
    unexpectedBuilds: newBuilds.filter((name) => !allowed.has(name)),
  };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;

/** Per route: how many, which statuses, p50 and p99 in ms. A markdown table. */
export function outcomeTable(outcomes: Outcome[]): string {
  const byRoute = new Map<string, Outcome[]>();
  for (const outcome of outcomes) {
    const list = byRoute.get(outcome.request.route) ?? [];
    list.push(outcome);
    byRoute.set(outcome.request.route, list);
  }
  const rows = [...byRoute.entries()].sort(([a], [b]) => a.localeCompare(b));
  const lines = ['| route | requests | statuses | p50 ms | p99 ms |', '| --- | ---: | --- | ---: | ---: |'];
  for (const [route, list] of [...rows, ['all', outcomes] as const]) {
    const statuses = new Map<string, number>();
    for (const { status } of list) statuses.set(String(status), (statuses.get(String(status)) ?? 0) + 1);
    const counted = [...statuses.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([status, n]) => `${status}×${n}`)
      .join(' ');
    const ms = list.map((o) => o.ms).sort((a, b) => a - b);
    lines.push(
      `| ${route} | ${list.length} | ${counted} | ${percentile(ms, 50).toFixed(1)} | ${percentile(ms, 99).toFixed(1)} |`,
    );
  }
  return lines.join('\n');
}

/** The ids of the build workflows of `taskQueue`, running or not: compared before and after. */
export async function buildWorkflowIds(client: Client, taskQueue: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const workflow of client.workflow.list({ query: buildWorkflowsQuery(taskQueue) }))
    ids.add(workflow.workflowId);
  return ids;
}
