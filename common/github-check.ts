import type { Config } from './config';
import type { GitHub, GitHubIdentity, WebhookConfig } from './github';

// `npm run github-check`: whether the service's GitHub credentials may do what its configuration
// asks of them, before builds find out one report at a time (refused for good, and dropped).

interface Need {
  /** What the service does with it. */
  what: string;
  /** A GitHub App's permission. */
  permission: string;
  access: 'read' | 'write';
  /** A classic token's scopes, any of which allows it (none: every token may). */
  scopes?: string[];
}

const LEVEL: Record<string, number> = { read: 1, write: 2, admin: 3 };

/** What this configuration needs of GitHub: permissions, and (an App's) webhook events. */
export function gitHubNeeds(config: Config): { needs: Need[]; events: string[] } {
  const needs: Need[] = [];
  if (!config.disableCommitStatuses)
    needs.push(
      config.githubCheckRuns
        ? { what: 'check runs', permission: 'checks', access: 'write' }
        : {
            what: 'commit statuses',
            permission: 'statuses',
            access: 'write',
            scopes: ['repo', 'repo:status', 'public_repo'],
          },
    );
  if (config.githubDeployments)
    needs.push({
      what: 'deployments',
      permission: 'deployments',
      access: 'write',
      scopes: ['repo', 'repo_deployment', 'public_repo'],
    });
  needs.push(
    { what: 'the trigger endpoints (a branch head)', permission: 'contents', access: 'read' },
    { what: 'the trigger endpoints (a pull request head)', permission: 'pull_requests', access: 'read' },
  );
  for (const hook of config.redeliverWebhooks) {
    if (hook.startsWith('orgs/'))
      needs.push({
        what: `redelivering ${hook}`,
        permission: 'organization_hooks',
        access: 'write',
        scopes: ['admin:org_hook'],
      });
    if (hook.startsWith('repos/'))
      needs.push({
        what: `redelivering ${hook}`,
        permission: 'repository_hooks',
        access: 'write',
        scopes: ['repo', 'admin:repo_hook'],
      });
  }
  const events = [
    'push',
    'pull_request',
    'delete',
    ...(config.githubCheckRuns ? ['check_run', 'check_suite'] : []),
  ];
  return { needs, events };
}

/** What `identity` may and may not do of what `config` needs, line by line; `problems` counts the latter. */
export function checkGitHubAccess(
  config: Config,
  identity: GitHubIdentity,
): { lines: string[]; problems: number } {
  const { needs, events } = gitHubNeeds(config);
  const lines: string[] = [];
  let problems = 0;
  const problem = (line: string) => {
    lines.push(`MISSING ${line}`);
    problems++;
  };
  const grants = (permissions: Record<string, string>, need: Need) =>
    (LEVEL[permissions[need.permission]] ?? 0) >= LEVEL[need.access];
  switch (identity.kind) {
    case 'none': {
      lines.push('No RUNBOAT_GITHUB_TOKEN and no GitHub App: GitHub is only read anonymously.');
      for (const need of needs.filter(({ access }) => access === 'write'))
        problem(`credentials for ${need.what} (set RUNBOAT_GITHUB_TOKEN, or a GitHub App)`);
      break;
    }
    case 'token': {
      lines.push(`Acting as ${identity.name}, with a token.`);
      if (identity.scopes === undefined) {
        lines.push(
          'A fine-grained token: GitHub does not tell its permissions. It needs, on the repositories built: ' +
            needs.map((need) => `${need.permission}: ${need.access} (${need.what})`).join('; '),
        );
        break;
      }
      lines.push(`Its scopes: ${identity.scopes.join(', ') || 'none'}.`);
      for (const need of needs.filter(({ scopes }) => scopes)) {
        if (need.scopes?.some((scope) => identity.scopes?.includes(scope)))
          lines.push(`ok      ${need.what}`);
        else problem(`${need.what}: a scope among ${need.scopes?.join(', ')}`);
      }
      break;
    }
    case 'app': {
      lines.push(`Acting as the GitHub App ${identity.name}.`);
      for (const need of needs) {
        if (grants(identity.permissions, need))
          lines.push(`ok      ${need.what} (${need.permission}: ${need.access})`);
        else problem(`${need.what}: the App's permission ${need.permission}: ${need.access}`);
      }
      for (const event of events.filter((event) => !identity.events.includes(event)))
        problem(
          `the App's subscription to ${event} events (its webhook, or an organization's, must send them)`,
        );
      if (!identity.installations.length) problem('an installation: the App is installed on no account');
      for (const installation of identity.installations) {
        const short = needs.filter(
          (need) => grants(identity.permissions, need) && !grants(installation.permissions, need),
        );
        for (const need of short)
          problem(
            `${need.what} on ${installation.account}: its installation has not accepted ${need.permission}: ` +
              `${need.access} (an owner of ${installation.account} must approve the App's new permissions)`,
          );
        if (!short.length)
          lines.push(
            `ok      installed on ${installation.account}` +
              (installation.selectedRepositories
                ? ', for selected repositories only: builds of the others are not reported to GitHub'
                : ''),
          );
      }
      break;
    }
  }
  return { lines, problems };
}

/**
 * The webhooks the check reads (the App's own, and those named for redelivery), each as GitHub
 * shows it, or why it would not.
 */
export async function readWebhooks(
  config: Config,
  github: GitHub,
): Promise<{ hook: string; webhook: WebhookConfig | string }[]> {
  const hooks = new Set([...(config.githubApp ? ['app/hook'] : []), ...config.redeliverWebhooks]);
  return Promise.all(
    [...hooks].map(async (hook) => ({
      hook,
      webhook: await github.webhookConfig(hook).catch((error: unknown) => String(error)),
    })),
  );
}

/**
 * Whether each webhook sends its deliveries to this service, signed as it expects; a webhook
 * given as a string is one GitHub would not show, and why.
 */
export function checkWebhooks(
  config: Config,
  webhooks: { hook: string; webhook: WebhookConfig | string }[],
): { lines: string[]; problems: number } {
  const expected = `${config.baseUrl}/webhooks/github`;
  const lines: string[] = [];
  let problems = 0;
  for (const { hook, webhook } of webhooks) {
    if (typeof webhook === 'string') {
      lines.push(`MISSING ${hook}: GitHub did not show it (${webhook})`);
      problems++;
    } else if (webhook.url !== expected) {
      lines.push(`MISSING ${hook}: it sends its deliveries to ${webhook.url || 'no URL'}, not ${expected}`);
      problems++;
    } else if (!webhook.signed && config.githubWebhookSecret !== undefined) {
      lines.push(
        `MISSING ${hook}: a secret (RUNBOAT_GITHUB_WEBHOOK_SECRET is set, so its unsigned deliveries get 401)`,
      );
      problems++;
    } else if (webhook.signed && config.githubWebhookSecret === undefined)
      lines.push(
        `ok      ${hook} (signed, but RUNBOAT_GITHUB_WEBHOOK_SECRET is unset: signatures are not checked)`,
      );
    else lines.push(`ok      ${hook} sends to ${expected}${webhook.signed ? ', signed' : ''}`);
  }
  return { lines, problems };
}
