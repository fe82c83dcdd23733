import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WebhookSide } from './github-webhook-side';

// GitHub's REST API as a burst of builds meets it, on loopback, for `npm run bench`
// (BENCH_GITHUB=limited) and `npm run chaos`: commit statuses and deployments accepted (a
// deployment found again by sha and environment), with GitHub's documented secondary rate limit
// on content-creating requests (80 a rolling minute, 500 a rolling hour), refused past it with a
// 403 and the `retry-after` GitHub sends. For a service acting as a GitHub App, its installation
// (one, on every account) and installation tokens, and check runs as commit statuses are
// (credentials are not checked here: test/github-app.test.ts does). And the webhooks it serves:
// their deliveries listed, and sent again when asked (`serve`).

const LIMITS = [
  { writes: 80, windowMs: 60_000 },
  { writes: 500, windowMs: 3_600_000 },
];

export interface EmulatedWrite {
  path: string;
  state: string | undefined;
  at: number;
  status: number;
  /** A deployment created: its id, and the commit it deploys. */
  deployment?: { id: number; ref: string; environment: string };
  /** A check run's commit. */
  sha?: string;
}

export interface GitHubEmulator {
  url: string;
  writes: EmulatedWrite[];
  /** Answers GitHub's REST calls about this webhook's deliveries (`WebhookSide.answer`). */
  serve(side: WebhookSide): void;
  close(): Promise<void>;
}

export async function startGitHubEmulator(): Promise<GitHubEmulator> {
  const writes: EmulatedWrite[] = [];
  const sides: WebhookSide[] = [];
  let deployments = 0;
  let tokens = 0;
  /** Seconds until the writes accepted leave room for one more; 0 when there is room now. */
  const waitSeconds = (now: number) => {
    const accepted = writes.filter((write) => write.status < 400).map((write) => write.at);
    let wait = 0;
    for (const { writes: limit, windowMs } of LIMITS) {
      const inWindow = accepted.filter((at) => at > now - windowMs);
      if (inWindow.length >= limit) wait = Math.max(wait, inWindow[inWindow.length - limit] + windowMs - now);
    }
    return Math.ceil(wait / 1000);
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const path = request.url ?? '/';
      const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        response.writeHead(status, { 'content-type': 'application/json', ...headers });
        response.end(JSON.stringify(body));
      };
      for (const side of sides) {
        const about = side.answer(request.method ?? 'GET', path, url());
        if (about) return answer(about.status, about.body, about.headers);
      }
      if (/^\/(repos\/[^/]+\/[^/]+|orgs\/[^/]+)\/installation$/.test(path)) return answer(200, { id: 1 });
      // Minting a token is not content GitHub's secondary limit counts.
      if (/^\/app\/installations\/\d+\/access_tokens$/.test(path))
        return answer(201, {
          token: `ghs_${++tokens}`,
          expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        });
      if (request.method === 'GET') {
        const query = new URL(path, 'http://github').searchParams;
        const found = writes
          .map((write) => write.deployment)
          .filter((deployment) => deployment && deployment.ref === query.get('sha'))
          .filter((deployment) => deployment?.environment === query.get('environment'))
          .reverse();
        return answer(200, path.includes('/deployments?') ? found : []);
      }
      const now = Date.now();
      const body = chunks.length
        ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            state?: string;
            ref?: string;
            environment?: string;
            head_sha?: string;
            status?: string;
            conclusion?: string;
          })
        : {};
      const wait = waitSeconds(now);
      // A check run's state as the commit status it stands for.
      const state = body.head_sha === undefined ? body.state : (body.conclusion ?? 'pending');
      const write: EmulatedWrite = { path, state, at: now, status: wait > 0 ? 403 : 201, sha: body.head_sha };
      writes.push(write);
      if (wait > 0)
        return answer(
          403,
          {
            message:
              'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
          },
          { 'retry-after': `${wait}` },
        );
      if (!/\/deployments$/.test(path)) return answer(201, {});
      write.deployment = { id: ++deployments, ref: body.ref ?? '', environment: body.environment ?? '' };
      answer(201, write.deployment);
    });
  });
  const url = () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: url(),
    writes,
    serve: (side) => sides.push(side),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * What GitHub shows of commit `sha` of `repo`: its last commit status (or check run), and its
 * deployment's last status (`none`: no deployment was ever created for it).
 */
export function shownOnGitHub(
  writes: EmulatedWrite[],
  repo: string,
  sha: string,
): { status: string | undefined; deployment: string | undefined } {
  const accepted = writes.filter((write) => write.status < 400);
  const ids = new Set(
    accepted.filter((write) => write.deployment?.ref === sha).map((write) => write.deployment!.id),
  );
  const last = (shows: (write: EmulatedWrite) => boolean) => accepted.filter(shows).at(-1)?.state;
  return {
    status: last(
      (write) =>
        write.path === `/repos/${repo}/statuses/${sha}` ||
        (write.path === `/repos/${repo}/check-runs` && write.sha === sha),
    ),
    deployment: ids.size
      ? last(({ path }) => [...ids].some((id) => path === `/repos/${repo}/deployments/${id}/statuses`))
      : 'none',
  };
}
