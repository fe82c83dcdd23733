import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import type { Config, GitHubAppCredentials } from './config';
import type { CommitStatusState, GitHubRefusal } from './github-reports';
import { logTail } from './ansi';
import { logger } from './logger';
import type { CommitInfo } from './types';

// All GitHub access goes through this module. The API base URL is configurable, so that
// tests point it at a local recording server (and GitHub Enterprise users at theirs).

export const COMMIT_STATUS_CONTEXT = 'runboat/build';

export type DeploymentState = 'in_progress' | 'success' | 'failure' | 'error' | 'inactive';

/** One environment per pull request or branch: `runboat/<target branch>[/pr-<n>]`. */
export function deploymentEnvironment(commit: CommitInfo): string {
  return `runboat/${commit.target_branch}${commit.pr === null ? '' : `/pr-${commit.pr}`}`;
}
const REQUEST_TIMEOUT_MS = 10_000;

type OctokitOptions = NonNullable<ConstructorParameters<typeof Octokit>[0]>;

/**
 * Octokit's own log lines into the service's JSON logs (it writes to the console otherwise, a
 * plain line in a JSON stream for every request GitHub refuses). Its line per failed request is
 * debug: the caller logs the failure, with the build it was about.
 */
const OCTOKIT_LOG = {
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => logger.warn({ from: 'octokit' }, message),
  error: (message: string) => logger.debug({ from: 'octokit' }, message),
};

/**
 * The account a request acts on: with a GitHub App, the App's installation there makes it. An
 * installation is looked up by the repository when there is one, else by the organization.
 */
interface Account {
  owner: string;
  repo?: string;
}

const accountKey = ({ owner, repo }: Account) => (repo === undefined ? owner : `${owner}/${repo}`);

export class GitHub {
  /** With a token (or none): every request. */
  private readonly withToken: Octokit | undefined;
  /** As a GitHub App (its JWT): the App's own endpoints, and finding its installations. */
  private readonly asApp: Octokit | undefined;
  /**
   * The App's installation that sees each repository (`owner/repo`) or organization (`owner`): an
   * installation on an account may have been given only some of its repositories.
   */
  private readonly installationIds = new Map<string, Promise<number>>();
  /** A client per installation, for all its repositories (tokens minted and renewed by auth-app). */
  private readonly installationClients = new Map<number, Octokit>();
  /** When this process's next write may go: writes are spaced by RUNBOAT_GITHUB_WRITES_PER_MINUTE. */
  private nextWriteAt = 0;

  constructor(private readonly config: Config) {
    if (config.githubApp) this.asApp = this.client(this.appAuth());
    else this.withToken = this.client({ auth: config.githubToken });
  }

  private appAuth(installationId?: number): Pick<OctokitOptions, 'auth' | 'authStrategy'> {
    const { id, privateKey } = this.config.githubApp as GitHubAppCredentials;
    return {
      authStrategy: createAppAuth,
      auth: { appId: id, privateKey, ...(installationId && { installationId }) },
    };
  }

  private client(auth: Pick<OctokitOptions, 'auth' | 'authStrategy'>): Octokit {
    const octokit = new Octokit({
      ...auth,
      baseUrl: this.config.githubApiUrl,
      userAgent: 'runboat-temporal',
      request: { timeout: REQUEST_TIMEOUT_MS },
      log: OCTOKIT_LOG,
    });
    // GitHub's secondary rate limits count content-creating requests (80 a minute at most, by
    // its documentation), and it asks for them one at a time, a second apart. One pace for all
    // of the process's clients: the limit is the App's (or the token's), not an installation's.
    const writeSpacingMs = 60_000 / this.config.githubWritesPerMinute;
    octokit.hook.before('request', async ({ method }) => {
      if (method === 'GET' || method === 'HEAD') return;
      const at = Math.max(Date.now(), this.nextWriteAt);
      this.nextWriteAt = at + writeSpacingMs;
      if (at > Date.now()) await new Promise((resolve) => setTimeout(resolve, at - Date.now()));
    });
    return octokit;
  }

  /**
   * Runs `call` with the client that may act on `account`. As an App, a token GitHub refuses
   * (401: revoked, say, when the App's permissions changed) is dropped and the call made once
   * more with a new one.
   */
  private async actingOn<T>(account: Account, call: (octokit: Octokit) => Promise<T>): Promise<T> {
    if (this.withToken) return call(this.withToken);
    const key = accountKey(account);
    const found = this.installationId(account);
    const id = await found;
    const client = this.installationClient(id);
    try {
      return await call(client);
    } catch (error) {
      if ((error as { status?: unknown }).status !== 401) throw error;
      // Its tokens are refused: a new one, and the installation looked up again (it may have
      // been removed and installed anew, under another id). Calls refused together forget once.
      if (this.installationClients.get(id) === client) this.installationClients.delete(id);
      if (this.installationIds.get(key) === found) this.installationIds.delete(key);
      return call(this.installationClient(await this.installationId(account)));
    }
  }

  private installationId(account: Account): Promise<number> {
    const key = accountKey(account);
    const known = this.installationIds.get(key);
    if (known) return known;
    const found = this.findInstallation(account);
    this.installationIds.set(key, found);
    // Not kept when it failed: GitHub was unavailable, or the App may be installed since.
    found.catch(() => {
      if (this.installationIds.get(key) === found) this.installationIds.delete(key);
    });
    return found;
  }

  private installationClient(id: number): Octokit {
    let client = this.installationClients.get(id);
    if (!client) this.installationClients.set(id, (client = this.client(this.appAuth(id))));
    return client;
  }

  private async findInstallation({ owner, repo }: Account): Promise<number> {
    const app = this.asApp as Octokit;
    try {
      const { data } =
        repo === undefined
          ? await app.rest.apps.getOrgInstallation({ org: owner })
          : await app.rest.apps.getRepoInstallation({ owner, repo });
      return data.id;
    } catch (error) {
      if ((error as { status?: unknown }).status !== 404) throw error;
      throw new GitHubAppNotInstalled(this.config.githubApp?.id, accountKey({ owner, repo }));
    }
  }

  async postCommitStatus(
    commit: CommitInfo,
    status: { state: CommitStatusState; description: string; targetUrl: string },
  ): Promise<void> {
    const [owner, repo] = commit.repo.split('/');
    await this.actingOn({ owner, repo }, (octokit) =>
      octokit.rest.repos.createCommitStatus({
        owner,
        repo,
        sha: commit.git_commit,
        state: status.state,
        description: status.description,
        target_url: status.targetUrl,
        context: COMMIT_STATUS_CONTEXT,
      }),
    );
  }

  /**
   * A check run of the commit, named as the commit status (`runboat/build`), whose external id is
   * the build's name (what a Re-run of it names). Each report is a new run: GitHub shows a
   * commit's newest run of a name, so retries need no id kept anywhere.
   */
  async postCheckRun(
    commit: CommitInfo,
    run: { build: string; state: CommitStatusState; description: string; detailsUrl: string; log?: string },
  ): Promise<void> {
    const [owner, repo] = commit.repo.split('/');
    const done = run.state !== 'pending';
    await this.actingOn({ owner, repo }, (octokit) =>
      octokit.rest.checks.create({
        owner,
        repo,
        name: COMMIT_STATUS_CONTEXT,
        head_sha: commit.git_commit,
        external_id: run.build,
        details_url: run.detailsUrl,
        status: done ? 'completed' : 'in_progress',
        ...(done && { conclusion: run.state === 'success' ? 'success' : 'failure' }),
        output: {
          title: run.description,
          summary: `Build \`${run.build}\`: ${run.description}.`,
          ...(run.log && { text: checkRunLogText(run.log) }),
        },
      }),
    );
  }

  /**
   * The build's deployment: found by environment and sha, or created, so that every retry and
   * every worker lands on the same one without keeping its id anywhere.
   */
  async findOrCreateDeployment(commit: CommitInfo, description: string): Promise<number> {
    const [owner, repo] = commit.repo.split('/');
    const environment = deploymentEnvironment(commit);
    const found = await this.findDeployment(commit);
    if (found !== undefined) return found;
    const { data } = await this.actingOn({ owner, repo }, (octokit) =>
      octokit.rest.repos.createDeployment({
        owner,
        repo,
        ref: commit.git_commit,
        environment,
        description,
        // A preview: GitHub marks it inactive when a newer one of the environment succeeds.
        transient_environment: true,
        production_environment: false,
        auto_merge: false,
        // GitHub would otherwise wait for the commit's statuses, our own pending one included.
        required_contexts: [],
      }),
    );
    const id = (data as { id?: unknown }).id;
    if (typeof id !== 'number') throw new UnexpectedGitHubResponse('deployment id');
    return id;
  }

  async findDeployment(commit: CommitInfo): Promise<number | undefined> {
    const [owner, repo] = commit.repo.split('/');
    const { data } = await this.actingOn({ owner, repo }, (octokit) =>
      octokit.rest.repos.listDeployments({
        owner,
        repo,
        sha: commit.git_commit,
        environment: deploymentEnvironment(commit),
        per_page: 1,
      }),
    );
    const id = Array.isArray(data) ? (data[0] as { id?: unknown } | undefined)?.id : undefined;
    return typeof id === 'number' ? id : undefined;
  }

  async postDeploymentStatus(
    commit: CommitInfo,
    deploymentId: number,
    status: { state: DeploymentState; description: string; environmentUrl?: string; logUrl?: string },
  ): Promise<void> {
    const [owner, repo] = commit.repo.split('/');
    await this.actingOn({ owner, repo }, (octokit) =>
      octokit.rest.repos.createDeploymentStatus({
        owner,
        repo,
        deployment_id: deploymentId,
        state: status.state,
        description: status.description,
        environment_url: status.environmentUrl,
        log_url: status.logUrl,
        // Only the newest deployment of the environment stays active.
        auto_inactive: true,
      }),
    );
  }

  /** The commit a branch points at now, as a build identity. */
  async branchHead(repo: string, branch: string): Promise<CommitInfo> {
    const [owner, name] = repo.split('/');
    const { data } = await this.actingOn({ owner, repo: name }, (octokit) =>
      octokit.rest.repos.getBranch({ owner, repo: name, branch }),
    );
    return {
      repo,
      target_branch: branch,
      pr: null,
      git_commit: expectString(data.commit?.sha, 'commit.sha'),
    };
  }

  /**
   * A webhook's deliveries since `since` (ms), newest first: GitHub lists them a page at a time,
   * newest first, so the listing stops at the first page that reaches back past `since`.
   */
  async webhookDeliveriesSince(hook: string, since: number): Promise<WebhookDelivery[]> {
    return this.actingOnHook(hook, async (octokit) => {
      const listed: WebhookDelivery[] = [];
      for await (const { data } of octokit.paginate.iterator(`GET /${hook}/deliveries`, { per_page: 100 })) {
        const page = (data as unknown[]).map(webhookDelivery);
        listed.push(...page.filter((delivery) => Date.parse(delivery.delivered_at) >= since));
        if (!page.length || Date.parse(page[page.length - 1].delivered_at) < since) break;
      }
      return listed;
    });
  }

  /** Asks GitHub to send a webhook's delivery again (a new attempt, with the same guid). */
  async redeliverWebhook(hook: string, deliveryId: number): Promise<void> {
    await this.actingOnHook(hook, (octokit) =>
      octokit.request(`POST /${hook}/deliveries/{delivery_id}/attempts`, { delivery_id: deliveryId }),
    );
  }

  /** `app/hook` is the App's own (its JWT); an organization's or a repository's, its installation's. */
  private actingOnHook<T>(hook: string, call: (octokit: Octokit) => Promise<T>): Promise<T> {
    if (hook === 'app/hook') {
      if (!this.asApp)
        throw new Error("app/hook is a GitHub App's webhook: the service has no App configured");
      return call(this.asApp);
    }
    const [scope, owner, repo] = hook.split('/');
    return this.actingOn(scope === 'repos' ? { owner, repo } : { owner }, call);
  }

  /**
   * Where a webhook sends its deliveries, and whether it signs them, for `npm run github-check`:
   * `app/hook` is the App's own (`/app/hook/config`), the others an organization's or a
   * repository's (their `config`).
   */
  async webhookConfig(hook: string): Promise<WebhookConfig> {
    const { data } = await this.actingOnHook(hook, (octokit) =>
      octokit.request(hook === 'app/hook' ? 'GET /app/hook/config' : `GET /${hook}`),
    );
    const config = ((hook === 'app/hook' ? data : (data as { config?: unknown }).config) ?? {}) as {
      url?: unknown;
      secret?: unknown;
    };
    return { url: typeof config.url === 'string' ? config.url : '', signed: Boolean(config.secret) };
  }

  /**
   * Who the service is on GitHub, for `npm run github-check`: the App, its permissions and events
   * and each installation's permissions; or the token's login and (a classic token's) scopes.
   */
  async identity(): Promise<GitHubIdentity> {
    if (this.asApp) {
      const { data: app } = await this.asApp.rest.apps.getAuthenticated();
      const installations = await this.asApp.paginate(this.asApp.rest.apps.listInstallations, {
        per_page: 100,
      });
      return {
        kind: 'app',
        name: app?.slug ?? app?.name ?? String(this.config.githubApp?.id),
        permissions: (app?.permissions ?? {}) as Record<string, string>,
        events: app?.events ?? [],
        installations: installations.map((installation) => ({
          account: (installation.account as { login?: string } | null)?.login ?? String(installation.id),
          permissions: installation.permissions as Record<string, string>,
          selectedRepositories: installation.repository_selection === 'selected',
        })),
      };
    }
    if (!this.withToken || this.config.githubToken === undefined) return { kind: 'none' };
    const { data, headers } = await this.withToken.rest.users.getAuthenticated();
    const scopes = headers['x-oauth-scopes'];
    return {
      kind: 'token',
      name: data.login,
      scopes:
        typeof scopes === 'string'
          ? scopes
              .split(',')
              .map((scope) => scope.trim())
              .filter(Boolean)
          : undefined,
    };
  }

  /** A pull request's head commit and the branch it targets, as a build identity. */
  async pullRequestHead(repo: string, pr: number): Promise<CommitInfo> {
    const [owner, name] = repo.split('/');
    const { data } = await this.actingOn({ owner, repo: name }, (octokit) =>
      octokit.rest.pulls.get({ owner, repo: name, pull_number: pr }),
    );
    return {
      repo,
      target_branch: expectString(data.base?.ref, 'base.ref'),
      pr,
      git_commit: expectString(data.head?.sha, 'head.sha'),
    };
  }
}

/** Lines of a failed init's log a check run shows (GitHub takes 65,535 characters of text). */
const CHECK_RUN_LOG_LINES = 200;
const CHECK_RUN_LOG_CHARS = 60_000;

/** The end of a log, as a check run's Markdown text: plain, fenced, its last lines. */
export function checkRunLogText(log: string): string {
  const { text, cut } = logTail(log, CHECK_RUN_LOG_LINES, CHECK_RUN_LOG_CHARS);
  // A fence longer than any run of backticks in the log, which would otherwise close it.
  const fence = '`'.repeat(Math.max(3, ...[...text.matchAll(/`+/g)].map(([run]) => run.length + 1)));
  return `${cut ? 'The end of the init log:' : 'The init log:'}\n\n${fence}text\n${text}\n${fence}\n`;
}

/**
 * What a failed request says of the next one: GitHub's rate limit (primary or secondary: 403 or
 * 429 with `retry-after`, or `x-ratelimit-remaining: 0` and `x-ratelimit-reset`, or its message),
 * GitHub unavailable (5xx, network, timeout), or undefined: refused for good (a repo gone, a token
 * without the right, an invalid request, an answer without what was asked), which asking again
 * would not change.
 */
export function gitHubRefusal(error: unknown, now = Date.now()): GitHubRefusal | undefined {
  const { status, response, message } = error as {
    status?: unknown;
    response?: { headers?: Record<string, string | number | undefined> };
    message?: unknown;
  };
  // Octokit gives its network errors and timeouts status 500; an error without one is not
  // GitHub's (an answer this service cannot read), and would be the same the next time.
  if (typeof status !== 'number') return undefined;
  if (status >= 500 || status === 408) return { kind: 'unavailable' };
  const headers = response?.headers ?? {};
  const retryAfter = Number(headers['retry-after']);
  if ((status === 403 || status === 429) && headers['retry-after'] !== undefined && retryAfter >= 0)
    return { kind: 'rate-limited', retryAfterMs: retryAfter * 1000 };
  const reset = Number(headers['x-ratelimit-reset']);
  if ((status === 403 || status === 429) && String(headers['x-ratelimit-remaining']) === '0' && reset > 0)
    return { kind: 'rate-limited', retryAfterMs: Math.max(reset * 1000 - now, 0) };
  if (status === 429 || (status === 403 && /rate limit/i.test(String(message))))
    return { kind: 'rate-limited' };
  return undefined;
}

/** One attempt at delivering a webhook event, as GitHub lists it (the fields used here). */
export interface WebhookDelivery {
  id: number;
  /** The event's id: the same for every attempt at it (redeliveries included). */
  guid: string;
  delivered_at: string;
  /** The receiver's answer; 0 when GitHub got none (it could not connect, or timed out). */
  status_code: number;
  event: string;
}

function webhookDelivery(value: unknown): WebhookDelivery {
  const item = (value ?? {}) as Record<string, unknown>;
  if (typeof item.id !== 'number') throw new UnexpectedGitHubResponse('delivery id');
  return {
    id: item.id,
    guid: expectString(item.guid, 'delivery guid'),
    delivered_at: expectString(item.delivered_at, 'delivered_at'),
    status_code: typeof item.status_code === 'number' ? item.status_code : 0,
    event: typeof item.event === 'string' ? item.event : '',
  };
}

/** A webhook's URL, and whether it has a secret (GitHub never shows the secret itself). */
export interface WebhookConfig {
  url: string;
  signed: boolean;
}

export type GitHubIdentity =
  | { kind: 'none' }
  /** `scopes`: a classic token's; undefined for a fine-grained one, which GitHub does not tell. */
  | { kind: 'token'; name: string; scopes: string[] | undefined }
  | {
      kind: 'app';
      name: string;
      permissions: Record<string, string>;
      events: string[];
      installations: {
        account: string;
        permissions: Record<string, string>;
        /** Given only some of the account's repositories ("Only select repositories"). */
        selectedRepositories: boolean;
      }[];
    };

/**
 * The App has no installation that sees the account or repository: GitHub refuses for good (as
 * its 404 would say) until someone installs it there.
 */
export class GitHubAppNotInstalled extends Error {
  readonly status = 404;

  constructor(appId: number | undefined, where: string) {
    super(
      `the GitHub App ${appId} (RUNBOAT_GITHUB_APP_ID) is not installed on ${where}, or its installation ` +
        'does not include it: install the App there, with access to the repository',
    );
    this.name = 'GitHubAppNotInstalled';
  }
}

export class UnexpectedGitHubResponse extends Error {
  constructor(field: string) {
    super(`GitHub's answer has no ${field}`);
    this.name = 'UnexpectedGitHubResponse';
  }
}

function expectString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new UnexpectedGitHubResponse(field);
  return value;
}
