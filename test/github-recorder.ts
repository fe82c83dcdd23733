import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../common/config';
import { testConfig } from './helpers';

// Stands in for GitHub's REST API on loopback: records every call and answers with canned
// responses, so tests read back what the service sent.

export interface RecordedCall {
  method: string;
  path: string;
  body: unknown;
  authorization: string | undefined;
}

export interface GitHubRecorder {
  url: string;
  calls: RecordedCall[];
  /** Answers `METHOD /path` with `body` (JSON) and `status`; unknown routes get 201 `{}`. */
  route(method: string, path: string, status: number, body: unknown): void;
  close(): Promise<void>;
}

export async function startGitHubRecorder(): Promise<GitHubRecorder> {
  const calls: RecordedCall[] = [];
  const routes = new Map<string, { status: number; body: unknown }>();
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const path = request.url ?? '/';
      calls.push({
        method: request.method ?? 'GET',
        path,
        body: text ? (JSON.parse(text) as unknown) : undefined,
        authorization: request.headers.authorization,
      });
      const answer = routes.get(`${request.method} ${path}`) ?? { status: 201, body: {} };
      response.writeHead(answer.status, { 'content-type': 'application/json' });
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
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A test configuration that reports builds to `github` (commit statuses, deployments). */
export function reportingTo(github: GitHubRecorder, env: Record<string, string> = {}): Config {
  return testConfig({
    RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
    RUNBOAT_GITHUB_API_URL: github.url,
    RUNBOAT_GITHUB_TOKEN: 'test-token',
    RUNBOAT_BASE_URL: 'https://runboat.example.org',
    ...env,
  });
}
