import { generateKeyPairSync, verify } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import type { Config } from '../common/config';
import { checkRunLogText, GitHub, GitHubAppNotInstalled, gitHubRefusal } from '../common/github';
import type { CommitInfo } from '../common/types';
import {
  reportingTo,
  startGitHubRecorder,
  startReportingStack,
  type CannedAnswer,
  type GitHubRecorder,
  type RecordedCall,
  type ReportingStack,
} from './github-recorder';
import { buildWorkflowId } from '../workflows/definitions';
import { SHA, untilBuildStatus, waitFor } from './helpers';

// The service acting on GitHub as a GitHub App: GitHub's App side is played on loopback. It
// checks every JWT against the App's public key, tells each account's installation, mints
// installation tokens, and refuses a repository call whose token is not one of the
// installation's (401), as GitHub does.

const APP_ID = 4321;
const { privateKey, publicKey } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  // As GitHub gives an App's key: PKCS#1, "BEGIN RSA PRIVATE KEY".
  privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
});

/** The accounts the App is installed on, and each installation's id. */
let installedOn: Map<string, number>;
/** The installations given only some of their account's repositories ("Only select repositories"). */
let selectedRepos: Map<number, string[]>;
const sees = (installation: number | undefined, repo: string | undefined) =>
  installation !== undefined &&
  (repo === undefined || !selectedRepos.has(installation) || selectedRepos.get(installation)?.includes(repo));
/** Tokens GitHub minted and still takes, with the installation of each. */
const tokens = new Map<string, number>();
let minted = 0;
let unavailable = false;

/** The JWT's claims when `authorization` is one the App signed, else undefined. */
function appClaims(
  authorization: string | undefined,
): { iss: unknown; iat: number; exp: number } | undefined {
  const [header, payload, signature] = (authorization ?? '').replace(/^bearer /i, '').split('.');
  if (!signature) return undefined;
  const signed = verify(
    'RSA-SHA256',
    Buffer.from(`${header}.${payload}`),
    publicKey,
    Buffer.from(signature, 'base64url'),
  );
  return signed
    ? (JSON.parse(Buffer.from(payload, 'base64url').toString()) as { iss: unknown; iat: number; exp: number })
    : undefined;
}

const badCredentials: CannedAnswer = { status: 401, body: { message: 'Bad credentials' } };

function appSide(call: RecordedCall): CannedAnswer | undefined {
  const path = call.path.split('?')[0];
  const lookup = /^\/(?:repos\/([^/]+)\/([^/]+)|orgs\/([^/]+))\/installation$/.exec(path);
  if (lookup || path.startsWith('/app/')) {
    const claims = appClaims(call.authorization);
    const now = Date.now() / 1000;
    if (!claims || String(claims.iss) !== String(APP_ID) || claims.iat > now || claims.exp < now)
      return badCredentials;
    if (unavailable) return { status: 503, body: { message: 'Service unavailable' } };
    if (lookup) {
      const installation = installedOn.get(lookup[1] ?? lookup[3]);
      return sees(installation, lookup[2])
        ? { status: 200, body: { id: installation } }
        : { status: 404, body: { message: 'Not Found' } };
    }
    const mint = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path);
    if (mint && call.method === 'POST') {
      const token = `ghs_${mint[1]}_${++minted}`;
      tokens.set(token, Number(mint[1]));
      return { status: 201, body: { token, expires_at: new Date(Date.now() + 3_600_000).toISOString() } };
    }
    return undefined;
  }
  const [, owner, repo] = /^\/(?:repos|orgs)\/([^/]+)(?:\/([^/]+))?/.exec(path) ?? [];
  const token = call.authorization?.replace(/^token /, '') ?? '';
  if (owner === undefined || tokens.get(token) !== installedOn.get(owner)) return badCredentials;
  return path.startsWith('/repos/') && !sees(installedOn.get(owner), repo)
    ? { status: 403, body: { message: 'Resource not accessible by integration' } }
    : undefined;
}

const appConfig = (github: GitHubRecorder, env: Record<string, string> = {}): Config =>
  reportingTo(github, {
    RUNBOAT_GITHUB_APP_ID: `${APP_ID}`,
    RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey,
    ...env,
  });

const commit = (repo: string, sha = 'a'): CommitInfo => ({
  repo,
  target_branch: '16.0',
  pr: null,
  git_commit: SHA(sha),
});
const status = {
  state: 'success',
  description: 'started',
  targetUrl: 'https://runboat.example.org',
} as const;

let github: GitHubRecorder;
beforeAll(async () => {
  github = await startGitHubRecorder();
  github.serve(appSide);
});
afterAll(() => github?.close());
beforeEach(() => {
  installedOn = new Map([
    ['oca', 11],
    ['acme', 12],
  ]);
  selectedRepos = new Map();
  unavailable = false;
  github.calls.length = 0;
});

const callsTo = (pattern: RegExp) => github.calls.filter((call) => pattern.test(call.path));
const statusCalls = () => callsTo(/\/statuses\//);

describe('the service as a GitHub App', () => {
  it("acts on each repository as the App's installation there: one lookup per repository, one token per installation", async () => {
    const gitHub = new GitHub(appConfig(github));
    await Promise.all(
      ['oca/sale-workflow', 'oca/web', 'oca/web', 'acme/shop'].map((repo, at) =>
        gitHub.postCommitStatus(commit(repo, 'abcd'[at]), status),
      ),
    );
    await gitHub.postCommitStatus(commit('oca/server-tools'), status);

    // GitHub's App side takes a repository's call only with a token of the owner's installation.
    expect(statusCalls().map((call) => call.status)).toEqual([201, 201, 201, 201, 201]);
    expect(
      callsTo(/\/installation$/)
        .map((call) => call.path)
        .sort(),
    ).toEqual([
      '/repos/acme/shop/installation',
      '/repos/oca/sale-workflow/installation',
      '/repos/oca/server-tools/installation',
      '/repos/oca/web/installation',
    ]);
    expect(
      callsTo(/access_tokens$/)
        .map((call) => call.path)
        .sort(),
    ).toEqual(['/app/installations/11/access_tokens', '/app/installations/12/access_tokens']);
    // Each signed with the App's key, for the App, and valid now (GitHub allows ten minutes).
    for (const call of [...callsTo(/\/installation$/), ...callsTo(/access_tokens$/)]) {
      const claims = appClaims(call.authorization);
      expect(claims?.iss).toBe(APP_ID);
      expect((claims?.exp ?? 0) - (claims?.iat ?? 0)).toBeLessThanOrEqual(600);
    }
  });

  it('takes a new token when GitHub refuses the one it has (revoked), and makes the call once more', async () => {
    const gitHub = new GitHub(appConfig(github));
    await gitHub.postCommitStatus(commit('oca/web'), status);
    tokens.clear();
    // A minute later: auth-app itself asks again for 5 s after minting a token (GitHub may not
    // know it everywhere yet), not what this test is about.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 60_000 });
    try {
      await gitHub.postCommitStatus(commit('oca/web', 'b'), status);
    } finally {
      vi.useRealTimers();
    }

    expect(statusCalls().map((call) => call.status)).toEqual([201, 401, 201]);
    expect(callsTo(/access_tokens$/)).toHaveLength(2);
    expect(statusCalls().at(-1)?.authorization).toBe(`token ${[...tokens.keys()][0]}`);
  });

  it('names an account the App is not installed on, refused for good, and looks again on the next call', async () => {
    const gitHub = new GitHub(appConfig(github));
    const refused = await gitHub
      .postCommitStatus(commit('nobody/addons'), status)
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GitHubAppNotInstalled);
    expect(String(refused)).toContain(
      `the GitHub App ${APP_ID} (RUNBOAT_GITHUB_APP_ID) is not installed on nobody/addons`,
    );
    expect(gitHubRefusal(refused)).toBeUndefined();
    expect(statusCalls()).toHaveLength(0);

    installedOn.set('nobody', 13);
    await gitHub.postCommitStatus(commit('nobody/addons'), status);
    expect(statusCalls().map((call) => call.status)).toEqual([201]);
  });

  it("names a repository the account's installation was not given, as one the App is not installed on", async () => {
    selectedRepos.set(11, ['web']);
    const gitHub = new GitHub(appConfig(github));
    await gitHub.postCommitStatus(commit('oca/web'), status);
    const refused = await gitHub
      .postCommitStatus(commit('oca/sale-workflow'), status)
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GitHubAppNotInstalled);
    expect(String(refused)).toContain('is not installed on oca/sale-workflow, or its installation does not');
    expect(statusCalls().map((call) => call.path)).toEqual([`/repos/oca/web/statuses/${SHA('a')}`]);

    // Given the repository since: the next call finds it, with the installation's token.
    selectedRepos.set(11, ['web', 'sale-workflow']);
    await gitHub.postCommitStatus(commit('oca/sale-workflow'), status);
    expect(statusCalls().map((call) => call.status)).toEqual([201, 201]);
    expect(callsTo(/access_tokens$/)).toHaveLength(1);
  });

  it('waits out GitHub unavailable while finding an installation, without keeping the failure', async () => {
    const gitHub = new GitHub(appConfig(github));
    unavailable = true;
    const failed = await gitHub.postCommitStatus(commit('oca/web'), status).catch((error: unknown) => error);
    expect(gitHubRefusal(failed)).toEqual({ kind: 'unavailable' });
    unavailable = false;
    await gitHub.postCommitStatus(commit('oca/web'), status);
    expect(statusCalls().map((call) => call.status)).toEqual([201]);
  });

  it("reads and redelivers the App's own webhook with its JWT, an organization's through its installation", async () => {
    const gitHub = new GitHub(appConfig(github));
    github.route('GET', '/app/hook/deliveries?per_page=100', 200, []);
    github.route('GET', '/orgs/oca/hooks/7/deliveries?per_page=100', 200, []);
    expect(await gitHub.webhookDeliveriesSince('app/hook', 0)).toEqual([]);
    await gitHub.redeliverWebhook('app/hook', 5);
    expect(await gitHub.webhookDeliveriesSince('orgs/oca/hooks/7', 0)).toEqual([]);
    await gitHub.redeliverWebhook('orgs/oca/hooks/7', 6);

    expect(github.calls.map((call) => `${call.method} ${call.path} ${call.status}`)).toEqual([
      'GET /app/hook/deliveries?per_page=100 200',
      'POST /app/hook/deliveries/5/attempts 201',
      'GET /orgs/oca/installation 200',
      'POST /app/installations/11/access_tokens 201',
      'GET /orgs/oca/hooks/7/deliveries?per_page=100 200',
      'POST /orgs/oca/hooks/7/deliveries/6/attempts 201',
    ]);
    expect(appClaims(github.calls[0].authorization)?.iss).toBe(APP_ID);
  });

  it("reports a build's commit status and deployment as the App", async () => {
    const reporting = await startReportingStack({
      RUNBOAT_GITHUB_APP_ID: `${APP_ID}`,
      RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey.replace(/\n/g, '\\n'),
    });
    try {
      reporting.github.serve(appSide);
      reporting.github.route('POST', '/repos/oca/web/deployments', 201, { id: 77 });
      const { stack, config, cluster } = reporting;
      expect(config.githubDeployments).toBe(true);
      const build = await startBuild(stack.temporal.client, config, commit('oca/web'));
      await cluster.finishJob(build.name, 'initialize', true);
      await untilBuildStatus(stack.temporal.client, build.name, 'started');
      const accepted = (path: string, state: string) =>
        reporting.github.calls.some(
          (call) =>
            call.path === path && call.status === 201 && (call.body as { state?: string }).state === state,
        );
      await waitFor('the success commit status, accepted', async () =>
        accepted(`/repos/oca/web/statuses/${SHA('a')}`, 'success'),
      );
      await waitFor('the success deployment status, accepted', async () =>
        accepted('/repos/oca/web/deployments/77/statuses', 'success'),
      );
      expect(reporting.github.calls.filter((call) => call.status === 401)).toEqual([]);
    } finally {
      await reporting.close();
    }
  });
});

/** A Re-run of one of the App's check runs on oca/web, as GitHub sends it; `checkRun` beside. */
const rerunCheckRun = (reporting: ReportingStack, checkRun: object) =>
  reporting.stack.api.webhook('check_run', {
    action: 'rerequested',
    check_run: { name: 'runboat/build', app: { id: APP_ID }, ...checkRun },
    repository: { full_name: 'oca/web' },
  });

/** The service as the App, reporting check runs, behind the App side above; `env` beside. */
async function startCheckRunsStack(env: Record<string, string>): Promise<ReportingStack> {
  const reporting = await startReportingStack({
    RUNBOAT_GITHUB_APP_ID: `${APP_ID}`,
    RUNBOAT_GITHUB_APP_PRIVATE_KEY: privateKey,
    RUNBOAT_GITHUB_CHECK_RUNS: 'true',
    RUNBOAT_GITHUB_DEPLOYMENTS: 'false',
    RUNBOAT_NO_CLEANUP_JOB: 'true',
    ...env,
  });
  reporting.github.serve(appSide);
  return reporting;
}

describe('check runs (RUNBOAT_GITHUB_CHECK_RUNS)', () => {
  it("fences a log's plain text, longer than its own backticks, and keeps its end", () => {
    expect(checkRunLogText('a ``` b\n\x1b[1mbold\x1b[0m\x07\n\n')).toBe(
      'The init log:\n\n````text\na ``` b\nbold\n````\n',
    );
    const long = Array.from({ length: 500 }, (_, at) => `line ${at}`).join('\n');
    const text = checkRunLogText(long);
    expect(text.startsWith('The end of the init log:\n\n```text\nline 300\n')).toBe(true);
    expect(text.endsWith('line 499\n```\n')).toBe(true);
    expect(checkRunLogText('x'.repeat(100_000)).length).toBeLessThan(65_535);
  });

  let reporting: ReportingStack;
  beforeAll(async () => {
    reporting = await startCheckRunsStack({ RUNBOAT_API_ADMIN_PASSWD: 'admin-password' });
  });
  afterAll(() => reporting?.close());

  const checkRuns = (sha: string) =>
    reporting.github.calls
      .filter((call) => call.path === '/repos/oca/web/check-runs' && call.status === 201)
      .map((call) => call.body as Record<string, unknown>)
      .filter((run) => run.head_sha === SHA(sha));
  const rerun = (checkRun: object) => rerunCheckRun(reporting, checkRun);
  const newInitJob = (name: string) =>
    waitFor('a new init job', async () => {
      const [job] = await reporting.cluster.jobs(name, 'initialize');
      return job && !job.status?.conditions?.length;
    });

  it('reports a build as a check run; its Re-run resets the build, or starts it again once it is undeployed', async () => {
    const { stack, config, cluster } = reporting;
    const build = await startBuild(stack.temporal.client, config, commit('oca/web', 'c'));
    await cluster.finishJob(build.name, 'initialize', true);
    await untilBuildStatus(stack.temporal.client, build.name, 'started');
    await waitFor('the successful check run', async () =>
      checkRuns('c').some((run) => run.conclusion === 'success'),
    );
    expect(checkRuns('c')[0]).toMatchObject({
      name: 'runboat/build',
      external_id: build.name,
      status: 'in_progress',
      details_url: `https://runboat.example.org/builds/${build.name}?live`,
    });
    expect(checkRuns('c').at(-1)).toMatchObject({ status: 'completed', conclusion: 'success' });
    // A check run instead of the commit status, not beside it.
    expect(reporting.github.calls.filter((call) => call.path.includes('/statuses/'))).toEqual([]);

    // Re-run on GitHub: the build is initialized again.
    const reset = await rerun({ external_id: build.name });
    expect(reset.status).toBe(200);
    expect(await reset.json()).toMatchObject({ outcome: 'reset', builds: [build.name] });
    await newInitJob(build.name);
    await cluster.finishJob(build.name, 'initialize', true);
    await untilBuildStatus(stack.temporal.client, build.name, 'started');

    // Undeployed, then Re-run: the same build is started again, from its commit.
    await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
    const again = await rerun({ external_id: build.name });
    expect(await again.json()).toMatchObject({ outcome: 'started', builds: [build.name] });
    await newInitJob(build.name);
    await cluster.finishJob(build.name, 'initialize', true);
    await untilBuildStatus(stack.temporal.client, build.name, 'started');
  });

  it("shows a failed build's init log in its check run", async () => {
    const { stack, config, cluster } = reporting;
    const build = await startBuild(stack.temporal.client, config, commit('oca/web', 'e'));
    // The log the worker keeps once the init failed (the test cluster runs no pods).
    await cluster.keepInitLog(
      build.name,
      'installing addons\n\x1b[31mERROR: module sale_stock: column does not exist\x1b[0m\n',
    );
    await cluster.finishJob(build.name, 'initialize', false);
    const failed = await waitFor('the failed check run', async () =>
      checkRuns('e').find((run) => run.conclusion === 'failure'),
    );
    expect((failed.output as { text?: string }).text).toBe(
      'The init log:\n\n```text\ninstalling addons\nERROR: module sale_stock: column does not exist\n```\n',
    );
  });

  it('resets every build of the commit on a Re-run of all checks', async () => {
    const { stack, config, cluster } = reporting;
    const { client } = stack.temporal;
    const builds = [
      await startBuild(client, config, commit('oca/web', 'f')),
      await startBuild(client, config, { ...commit('oca/web', 'f'), pr: 5 }),
    ];
    for (const { name } of builds) {
      await cluster.finishJob(name, 'initialize', true);
      await untilBuildStatus(client, name, 'started');
    }
    const suite = (checkSuite: object) =>
      reporting.stack.api.webhook('check_suite', {
        action: 'rerequested',
        check_suite: { head_sha: SHA('f'), app: { id: APP_ID }, ...checkSuite },
        repository: { full_name: 'oca/web' },
      });
    expect(await (await suite({ app: { id: APP_ID + 1 } })).json()).toMatchObject({ outcome: 'ignored' });
    expect(await (await suite({ head_sha: SHA('9') })).json()).toMatchObject({
      outcome: 'ignored',
      builds: [],
    });
    const answer = (await (await suite({})).json()) as { outcome: string; builds: string[] };
    expect(answer.outcome).toBe('reset');
    expect(answer.builds.sort()).toEqual(builds.map(({ name }) => name).sort());
    for (const { name } of builds) {
      await newInitJob(name);
      await cluster.finishJob(name, 'initialize', true);
      await untilBuildStatus(client, name, 'started');
    }
  });

  it("ignores other Apps' check runs, other actions and names that are no build's, and refuses a malformed payload", async () => {
    const outcomes = async (...checkRuns: object[]) =>
      Promise.all(
        checkRuns.map(async (checkRun) => {
          const response = await rerun(checkRun);
          return [response.status, ((await response.json()) as { outcome?: string }).outcome];
        }),
      );
    // A build of this service, whose name another App's check run might carry.
    const { name } = await startBuild(
      reporting.stack.temporal.client,
      reporting.config,
      commit('oca/web', 'd'),
    );
    expect(
      await outcomes(
        { external_id: name, app: { id: APP_ID + 1 } },
        { external_id: name, name: 'ci/tests' },
        { external_id: '../etc' },
        { external_id: null },
        { external_id: 'oca-web-16-0-never-built' },
      ),
    ).toEqual(Array(5).fill([200, 'ignored']));
    const completed = await reporting.stack.api.webhook('check_run', {
      action: 'completed',
      check_run: { name: 'runboat/build', external_id: 'x' },
      repository: { full_name: 'oca/web' },
    });
    expect(await completed.json()).toMatchObject({ outcome: 'ignored', detail: 'action completed' });
    const malformed = await reporting.stack.api.webhook('check_run', {
      action: 'rerequested',
      check_run: { external_id: 'x' },
      repository: { full_name: 'oca/web' },
    });
    expect(malformed.status).toBe(400);
  });

  it('answers a trigger for an account the App is not installed on with 503, saying so', async () => {
    installedOn.delete('oca');
    const answer = await reporting.stack.api.request(
      'POST',
      '/api/v1/builds/trigger/branch?repo=oca/web&branch=16.0',
      { admin: true },
    );
    expect(answer.status).toBe(503);
    expect(((await answer.json()) as { detail: string }).detail).toContain(
      `the GitHub App ${APP_ID} (RUNBOAT_GITHUB_APP_ID) is not installed on oca/web`,
    );
  });
});

describe('a Re-run under RUNBOAT_MAX_BUILDS_PER_REF', () => {
  let reporting: ReportingStack;
  beforeAll(async () => {
    reporting = await startCheckRunsStack({ RUNBOAT_MAX_BUILDS_PER_REF: '1' });
  });
  afterAll(() => reporting?.close());

  it("starts an older commit's build again beside the ref's newest, which it leaves deployed", async () => {
    const { stack, config } = reporting;
    const { client } = stack.temporal;
    const older = await startBuild(client, config, { ...commit('oca/web', '1'), pr: 9 });
    // Each listed before what comes next, as between two pushes, so that the cap counts it.
    const listed = (name: string) =>
      waitFor(`${name} listed`, async () => {
        const builds = (await (await stack.api.request('GET', '/api/v1/builds?pr=9')).json()) as {
          name: string;
        }[];
        return builds.some((build) => build.name === name);
      });
    await listed(older.name);
    // The pull request's next push: the cap undeploys the older build.
    const newest = await startBuild(client, config, { ...commit('oca/web', '2'), pr: 9 });
    await client.workflow.getHandle(buildWorkflowId(older.name)).result();
    await listed(newest.name);

    // Re-run on the older commit's check run: asked for by name, it comes back; the newest stays.
    const answer = await rerunCheckRun(reporting, { external_id: older.name });
    expect(await answer.json()).toMatchObject({ outcome: 'started', builds: [older.name] });
    // The cap is applied within the answer: the newest build would have its undeploy by now.
    const { status, pending_commands } = await getBuildState(client, newest.name);
    expect(status).not.toBe('undeploying');
    expect(pending_commands).not.toContain('undeploy');
    expect((await client.workflow.getHandle(buildWorkflowId(older.name)).describe()).status.name).toBe(
      'RUNNING',
    );
  });
});
