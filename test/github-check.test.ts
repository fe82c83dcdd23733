import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig, type Config } from '../common/config';
import { GitHub } from '../common/github';
import { checkGitHubAccess, checkWebhooks, readWebhooks } from '../common/github-check';
import { logger } from '../common/logger';
import { newGitHubAppKey } from '../scripts/github-app-key';
import { startGitHubRecorder, type CannedAnswer, type GitHubRecorder } from './github-recorder';

// `npm run github-check`: who the service is on GitHub, and what it may not do of what its
// configuration asks, read from GitHub (a recorder playing its answers) as the command reads it.

let github: GitHubRecorder;
/** GitHub's answer to `GET /user` (a token's) and to the App's `GET /app` and installations. */
let answers: Record<string, CannedAnswer> = {};
beforeAll(async () => {
  github = await startGitHubRecorder();
  github.serve((call) => answers[call.path.split('?')[0]]);
});
afterAll(() => github?.close());

const key = newGitHubAppKey();
const configOf = (env: Record<string, string>): Config =>
  loadConfig({
    RUNBOAT_BUILD_NAMESPACE: 'builds',
    RUNBOAT_BUILD_DOMAIN: 'runboat.example.org',
    RUNBOAT_GITHUB_API_URL: github.url,
    ...env,
  });
const asApp = { RUNBOAT_GITHUB_APP_ID: '4321', RUNBOAT_GITHUB_APP_PRIVATE_KEY: key };
const check = async (env: Record<string, string>) => {
  const config = configOf(env);
  return checkGitHubAccess(config, await new GitHub(config).identity());
};

describe('github-check', () => {
  it("as an App: its permissions and events, and each installation's accepted permissions", async () => {
    answers = {
      '/app': {
        status: 200,
        body: {
          slug: 'runboat-oca',
          permissions: { checks: 'write', contents: 'read', pull_requests: 'read', metadata: 'read' },
          events: ['push', 'pull_request', 'delete', 'check_run'],
        },
      },
      '/app/installations': {
        status: 200,
        body: [
          {
            id: 11,
            account: { login: 'OCA' },
            permissions: { checks: 'write', contents: 'read', pull_requests: 'read' },
            repository_selection: 'all',
          },
          {
            id: 13,
            account: { login: 'camptocamp' },
            permissions: { checks: 'write', contents: 'read', pull_requests: 'read' },
            repository_selection: 'selected',
          },
          { id: 12, account: { login: 'acme' }, permissions: { checks: 'write', contents: 'read' } },
        ],
      },
    };
    const { lines, problems } = await check({ ...asApp, RUNBOAT_GITHUB_CHECK_RUNS: 'true' });
    expect(lines).toEqual([
      'Acting as the GitHub App runboat-oca.',
      'ok      check runs (checks: write)',
      "MISSING deployments: the App's permission deployments: write",
      'ok      the trigger endpoints (a branch head) (contents: read)',
      'ok      the trigger endpoints (a pull request head) (pull_requests: read)',
      "MISSING the App's subscription to check_suite events (its webhook, or an organization's, must send them)",
      'ok      installed on OCA',
      'ok      installed on camptocamp, for selected repositories only: builds of the others are not reported to GitHub',
      'MISSING the trigger endpoints (a pull request head) on acme: its installation has not accepted ' +
        "pull_requests: read (an owner of acme must approve the App's new permissions)",
    ]);
    expect(problems).toBe(3);
    // The App's own endpoints, with its JWT.
    expect(
      github.calls
        .filter((call) => call.path.startsWith('/app'))
        .every((call) => /^bearer /i.test(call.authorization ?? '')),
    ).toBe(true);
  });

  it("with a classic token: its scopes against what is asked; a fine-grained one's cannot be told", async () => {
    const user = (scopes?: string): CannedAnswer => ({
      status: 200,
      body: { login: 'oca-bot' },
      headers: scopes === undefined ? {} : { 'x-oauth-scopes': scopes },
    });
    const withToken = {
      RUNBOAT_GITHUB_TOKEN: 'token',
      RUNBOAT_DISABLE_COMMIT_STATUSES: 'false',
      RUNBOAT_REDELIVER_WEBHOOKS: 'orgs/OCA/hooks/1',
    };
    answers = { '/user': user('public_repo, admin:org_hook') };
    expect(await check(withToken)).toEqual({
      lines: [
        'Acting as oca-bot, with a token.',
        'Its scopes: public_repo, admin:org_hook.',
        'ok      commit statuses',
        'ok      deployments',
        'ok      redelivering orgs/OCA/hooks/1',
      ],
      problems: 0,
    });
    answers = { '/user': user('read:org') };
    expect((await check(withToken)).lines.filter((line) => line.startsWith('MISSING'))).toEqual([
      'MISSING commit statuses: a scope among repo, repo:status, public_repo',
      'MISSING deployments: a scope among repo, repo_deployment, public_repo',
      'MISSING redelivering orgs/OCA/hooks/1: a scope among admin:org_hook',
    ]);
    answers = { '/user': user() };
    const fineGrained = await check(withToken);
    expect(fineGrained.problems).toBe(0);
    expect(fineGrained.lines[1]).toMatch(
      /^A fine-grained token: GitHub does not tell its permissions\. It needs/,
    );
  });

  it("reads where the App's webhook and those named for redelivery send, and whether they sign", async () => {
    const hooks = {
      RUNBOAT_REDELIVER_WEBHOOKS: 'orgs/OCA/hooks/1,repos/oca/web/hooks/2,repos/oca/gone/hooks/3',
    };
    const webhook = (url: string, secret?: string): CannedAnswer => ({
      status: 200,
      body: { config: { url, content_type: 'json', ...(secret && { secret }) } },
    });
    answers = {
      '/orgs/OCA/hooks/1': webhook('https://old.example.org/webhooks/github', '********'),
      '/repos/oca/web/hooks/2': webhook('https://runboat.example.org/webhooks/github'),
      '/repos/oca/gone/hooks/3': { status: 404, body: { message: 'Not Found' } },
    };
    const checked = async (env: Record<string, string>) => {
      const config = configOf({ RUNBOAT_BASE_URL: 'https://runboat.example.org', ...env });
      return checkWebhooks(config, await readWebhooks(config, new GitHub(config)));
    };
    // Octokit's own line for the refused request goes to the JSON logs (debug), not the console.
    const debug = vi.spyOn(logger, 'debug');
    const withToken = await checked({
      RUNBOAT_GITHUB_TOKEN: 'token',
      RUNBOAT_GITHUB_WEBHOOK_SECRET: 's',
      ...hooks,
    });
    expect(withToken.lines.slice(0, 2)).toEqual([
      'MISSING orgs/OCA/hooks/1: it sends its deliveries to https://old.example.org/webhooks/github, not https://runboat.example.org/webhooks/github',
      'MISSING repos/oca/web/hooks/2: a secret (RUNBOAT_GITHUB_WEBHOOK_SECRET is set, so its unsigned deliveries get 401)',
    ]);
    expect(withToken.lines[2]).toMatch(
      /^MISSING repos\/oca\/gone\/hooks\/3: GitHub did not show it \(HttpError: Not Found/,
    );
    expect(withToken.problems).toBe(3);
    expect(debug).toHaveBeenCalledWith(
      { from: 'octokit' },
      expect.stringMatching(/^GET \/repos\/oca\/gone\/hooks\/3 - 404/),
    );
    debug.mockRestore();

    // As an App: its own webhook, with its JWT.
    answers = {
      '/app/hook/config': {
        status: 200,
        body: { url: 'https://runboat.example.org/webhooks/github', secret: '********' },
      },
    };
    expect(await checked({ ...asApp, RUNBOAT_GITHUB_WEBHOOK_SECRET: 's' })).toEqual({
      lines: ['ok      app/hook sends to https://runboat.example.org/webhooks/github, signed'],
      problems: 0,
    });
    expect((await checked(asApp)).lines).toEqual([
      'ok      app/hook (signed, but RUNBOAT_GITHUB_WEBHOOK_SECRET is unset: signatures are not checked)',
    ]);
  });

  it('without credentials, names what cannot be posted', async () => {
    expect(await check({ RUNBOAT_DISABLE_COMMIT_STATUSES: 'false' })).toEqual({
      lines: [
        'No RUNBOAT_GITHUB_TOKEN and no GitHub App: GitHub is only read anonymously.',
        'MISSING credentials for commit statuses (set RUNBOAT_GITHUB_TOKEN, or a GitHub App)',
      ],
      problems: 1,
    });
  });

  it('as a command: prints the check and exits 1 when something is missing, 2 when GitHub cannot be asked', async () => {
    answers = {
      '/user': { status: 200, body: { login: 'oca-bot' }, headers: { 'x-oauth-scopes': 'read:org' } },
    };
    const run = (env: Record<string, string>) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'worker/github-check.ts'], {
        cwd: path.resolve(__dirname, '..'),
        env: {
          ...process.env,
          RUNBOAT_BUILD_NAMESPACE: 'builds',
          RUNBOAT_BUILD_DOMAIN: 'runboat.example.org',
          RUNBOAT_GITHUB_TOKEN: 'token',
          RUNBOAT_GITHUB_API_URL: github.url,
          LOG_LEVEL: 'warn',
          ...env,
        },
      }).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
    const missing = await run({ RUNBOAT_DISABLE_COMMIT_STATUSES: 'false' });
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain(
      'MISSING commit statuses: a scope among repo, repo:status, public_repo\n',
    );
    const unreachable = await run({ RUNBOAT_GITHUB_API_URL: 'http://127.0.0.1:9' });
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toContain('GitHub could not be asked');
  });
});
