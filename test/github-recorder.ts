import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../common/config';
import { startStack, type StackOptions, type TestStack } from './api-server';
import { TestCluster, testConfig } from './helpers';

// Stands in for GitHub's REST API on loopback: records every call and answers with canned
// responses, so tests read back what the service sent.

export interface RecordedCall {
  method: string;
  path: string;
  body: unknown;
  authorization: string | undefined;
  /** When it arrived (ms since the epoch), and the status it was answered with. */
  at: number;
  status: number;
}

export interface CannedAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface GitHubRecorder {
  url: string;
  calls: RecordedCall[];
  /** Answers `METHOD /path` with `body` (JSON) and `status`; unknown routes get 201 `{}`. */
  route(method: string, path: string, status: number, body: unknown): void;
  /** Answers the next `times` calls that `matches` with `answer`, before any route. */
  answerNext(times: number, answer: CannedAnswer, matches: (call: RecordedCall) => boolean): void;
  /** Answers the calls `answer` has an answer for (after `answerNext`'s, before any route). */
  serve(answer: (call: RecordedCall) => CannedAnswer | undefined): void;
  close(): Promise<void>;
}

export async function startGitHubRecorder(): Promise<GitHubRecorder> {
  const calls: RecordedCall[] = [];
  const routes = new Map<string, CannedAnswer>();
  const next: Array<{ left: number; answer: CannedAnswer; matches: (call: RecordedCall) => boolean }> = [];
  const served: Array<(call: RecordedCall) => CannedAnswer | undefined> = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const path = request.url ?? '/';
      const call: RecordedCall = {
        method: request.method ?? 'GET',
        path,
        body: text ? (JSON.parse(text) as unknown) : undefined,
        authorization: request.headers.authorization,
        at: Date.now(),
        status: 0,
      };
      const canned = next.find((each) => each.left > 0 && each.matches(call));
      if (canned) canned.left--;
      const answer = canned?.answer ??
        served.reduce<CannedAnswer | undefined>((found, answer) => found ?? answer(call), undefined) ??
        routes.get(`${request.method} ${path}`) ?? { status: 201, body: {} };
      call.status = answer.status;
      calls.push(call);
      response.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
      response.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    route(method, path, status, body) {
      routes.set(`${method} ${path}`, { status, body });
    },
    answerNext(times, answer, matches) {
      next.push({ left: times, answer, matches });
    },
    serve(answer) {
      served.push(answer);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A test configuration that reports builds to `github` (commit statuses, deployments). */
export function reportingTo(github: GitHubRecorder, env: Record<string, string> = {}): Config {
  return testConfig({
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
    RUNBOAT_GITHUB_API_URL: github.url,
    // A token, unless the service acts as a GitHub App.
    ...(env.RUNBOAT_GITHUB_APP_ID === undefined && { RUNBOAT_GITHUB_TOKEN: 'test-token' }),
    RUNBOAT_BASE_URL: 'https://runboat.example.org',
    // GitHub's writes spaced by 10 ms, not a second: tests post dozens.
    RUNBOAT_GITHUB_WRITES_PER_MINUTE: '6000',
    ...env,
  });
}

/**
 * The states posted, one after another, a state repeated in a row counted once: a status still
 * queued when the build's next one comes is replaced by it, so how many of each go is not fixed.
 */
export const statesInTurn = (states: string[]): string[] =>
  states.filter((state, at) => state !== states[at - 1]);

export interface ReportingStack {
  github: GitHubRecorder;
  config: Config;
  cluster: TestCluster;
  stack: TestStack;
  close(): Promise<void>;
}

/** A recorder, and a stack (`startStack`) whose configuration reports builds to it. */
export async function startReportingStack(
  env: Record<string, string> = {},
  options: StackOptions = {},
): Promise<ReportingStack> {
  const github = await startGitHubRecorder();
  const config = reportingTo(github, env);
  const cluster = new TestCluster(config.buildNamespace);
  const stack = await startStack(config, cluster, options);
  return {
    github,
    config,
    cluster,
    stack,
    async close() {
      await stack.close();
      await github.close();
    },
  };
}
