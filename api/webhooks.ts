import type { Webhooks } from '@octokit/webhooks';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import express, { Router } from 'express';
import { z } from 'zod';
import { branchNameProblem, BUILD_NAME_PATTERN, GIT_SHA } from '../common/build';
import { findRepoSettings, type Config } from '../common/config';
import { COMMIT_STATUS_CONTEXT } from '../common/github';
import { listBuildsRunningOrEnded } from '../common/build-list';
import { buildFromSearchAttributes } from '../common/search-attributes';
import type { CommitInfo } from '../common/types';
import { logger } from '../common/logger';
import { buildWorkflowId } from '../workflows/definitions';
import { boundedCalls, type Bounded } from './backend';
import { CommandRefusedError, sendBuildCommand, startBuild, undeployBuilds } from './build-client';
import { HttpError } from './errors';
import { parseOr400 } from './schemas';

// GitHub's webhook: pushes and pull requests start builds; deleted branches and closed pull
// requests undeploy theirs; a Re-run of a build's check run resets it, or starts it again once
// undeployed, and a Re-run of all checks does so for every build of the commit. Payloads are
// verified (when a secret is set) before being read.

export const WEBHOOK_BODY_LIMIT = '1mb';

const repository = z.object({ full_name: z.string().min(3) });
const pushPayload = z.object({
  ref: z.string(),
  before: z.string(),
  after: z.string(),
  deleted: z.boolean().optional(),
  repository,
});
const pullRequestPayload = z.object({
  action: z.string(),
  number: z.number().int().positive(),
  pull_request: z.object({
    head: z.object({ sha: z.string() }),
    base: z.object({ ref: z.string() }),
    draft: z.boolean().nullish(),
  }),
  repository,
});
const deletePayload = z.object({ ref: z.string(), ref_type: z.string(), repository });
const checkRunPayload = z.object({
  action: z.string(),
  check_run: z.object({
    name: z.string(),
    external_id: z.string().nullish(),
    app: z.object({ id: z.number() }).nullish(),
  }),
  repository,
});
const checkSuitePayload = z.object({
  action: z.string(),
  check_suite: z.object({ head_sha: z.string(), app: z.object({ id: z.number() }).nullish() }),
  repository,
});
/** The `pull_request` actions that build the pull request's head. */
const BUILT_ACTIONS = ['opened', 'synchronize', 'reopened'];
/** Builds of one commit a "Re-run all checks" acts on, at most. */
const MAX_RERUNS_OF_A_COMMIT = 10;

export interface WebhookOutcome {
  outcome: 'started' | 'reset' | 'undeployed' | 'ignored';
  detail: string;
  builds: string[];
}

const ignored = (detail: string): WebhookOutcome => ({ outcome: 'ignored', detail, builds: [] });

export type WebhookObserver = (event: string, outcome: WebhookOutcome['outcome'] | 'rejected') => void;

/**
 * A delivery's payload: its body, or, with GitHub's other content type (a webhook's default,
 * `application/x-www-form-urlencoded`), the body's `payload` field. The signature is over the
 * body as sent either way.
 */
function webhookPayload(body: string, formEncoded: boolean): unknown {
  const json = formEncoded ? new URLSearchParams(body).get('payload') : body;
  if (json === null) throw new HttpError(400, 'the form-encoded delivery has no payload field');
  try {
    return JSON.parse(json);
  } catch {
    throw new HttpError(400, 'the payload is not valid JSON');
  }
}

export function webhookRouter(
  config: Config,
  client: Client,
  observe: WebhookObserver = () => undefined,
  /** The request's deadline for Temporal: GitHub gives up on a delivery after 10 s. */
  bounded: Bounded = boundedCalls(client),
): Router {
  const router = Router();
  const verifier = config.githubWebhookSecret ? webhookVerifier(config.githubWebhookSecret) : undefined;

  router.post(
    '/webhooks/github',
    express.raw({ type: () => true, limit: WEBHOOK_BODY_LIMIT }),
    async (request, response) => {
      const event = request.get('x-github-event') ?? '';
      try {
        const body = Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '';
        if (verifier) {
          const signature = request.get('x-hub-signature-256') ?? '';
          const valid =
            signature !== '' && (await (await verifier).verify(body, signature).catch(() => false));
          if (!valid) throw new HttpError(401, 'missing or invalid X-Hub-Signature-256');
        }
        const payload = webhookPayload(body, Boolean(request.is('application/x-www-form-urlencoded')));
        const result = await bounded(() => handle(event, payload));
        logger[result.outcome === 'ignored' ? 'debug' : 'info']({ event, ...result }, 'webhook');
        observe(event, result.outcome);
        response.json(result);
      } catch (error) {
        observe(event, 'rejected');
        throw error;
      }
    },
  );

  async function handle(event: string, payload: unknown): Promise<WebhookOutcome> {
    switch (event) {
      case 'push': {
        const push = parseOr400(pushPayload, payload, 'invalid payload');
        if (!push.ref.startsWith('refs/heads/')) return ignored(`${push.ref} is not a branch`);
        const branch = push.ref.slice('refs/heads/'.length);
        const repo = push.repository.full_name.toLowerCase();
        if (!findRepoSettings(config, repo, branch)) return ignored(`${repo} ${branch} is not configured`);
        checkBranch(branch);
        if (push.deleted) {
          const newest = { repo, target_branch: branch, pr: null, git_commit: push.before };
          return undeploy({ repo, branch }, `branch ${branch} deleted`, newest);
        }
        return start({ repo, target_branch: branch, pr: null, git_commit: push.after });
      }
      case 'pull_request': {
        const pr = parseOr400(pullRequestPayload, payload, 'invalid payload');
        const repo = pr.repository.full_name.toLowerCase();
        const target = pr.pull_request.base.ref;
        if (!findRepoSettings(config, repo, target)) return ignored(`${repo} ${target} is not configured`);
        checkBranch(target);
        const head = { repo, target_branch: target, pr: pr.number, git_commit: pr.pull_request.head.sha };
        if (pr.action === 'closed')
          return undeploy({ repo, pr: pr.number }, `pull request ${pr.number} closed`, head);
        if (config.skipDraftPullRequests) {
          if (pr.action === 'converted_to_draft')
            return undeploy({ repo, pr: pr.number }, `pull request ${pr.number} converted to a draft`, head);
          if (pr.action === 'ready_for_review') return start(head);
          if (pr.pull_request.draft && BUILT_ACTIONS.includes(pr.action))
            return ignored(`pull request ${pr.number} is a draft (RUNBOAT_SKIP_DRAFT_PULL_REQUESTS)`);
        }
        if (!BUILT_ACTIONS.includes(pr.action)) return ignored(`action ${pr.action}`);
        return start(head);
      }
      case 'delete': {
        const deleted = parseOr400(deletePayload, payload, 'invalid payload');
        const repo = deleted.repository.full_name.toLowerCase();
        if (deleted.ref_type !== 'branch') return ignored(`${deleted.ref_type} deleted`);
        if (!findRepoSettings(config, repo, deleted.ref))
          return ignored(`${repo} ${deleted.ref} is not configured`);
        checkBranch(deleted.ref);
        return undeploy({ repo, branch: deleted.ref }, `branch ${deleted.ref} deleted`);
      }
      case 'check_run': {
        const { action, check_run: run } = parseOr400(checkRunPayload, payload, 'invalid payload');
        const notOurs = notOurRerun(action, run.app);
        if (notOurs) return ignored(notOurs);
        if (run.name !== COMMIT_STATUS_CONTEXT)
          return ignored(`check run ${run.name} is not one of this service's`);
        const name = run.external_id ?? '';
        if (!BUILD_NAME_PATTERN.test(name)) return ignored(`external id ${name} is not a build name`);
        return rerun(name);
      }
      case 'check_suite': {
        const {
          action,
          check_suite: suite,
          repository,
        } = parseOr400(checkSuitePayload, payload, 'invalid payload');
        const notOurs = notOurRerun(action, suite.app);
        if (notOurs) return ignored(notOurs);
        if (!GIT_SHA.test(suite.head_sha)) return ignored(`head_sha ${suite.head_sha} is not a commit`);
        return rerunCommit(repository.full_name.toLowerCase(), suite.head_sha);
      }
      default:
        return ignored(`event ${event || '(none)'} is not handled`);
    }
  }

  async function start(
    commit: Parameters<typeof startBuild>[2],
    options?: Parameters<typeof startBuild>[3],
  ): Promise<WebhookOutcome> {
    const build = await startBuild(client, config, commit, options);
    return { outcome: 'started', detail: `build ${build.name}`, builds: [build.name] };
  }

  /** Why a Re-run of a check run or of a check suite is not this service's to act on; undefined if it is. */
  function notOurRerun(action: string, app: { id: number } | null | undefined): string | undefined {
    if (action !== 'rerequested') return `action ${action}`;
    if (!config.githubCheckRuns) return 'check runs are off (RUNBOAT_GITHUB_CHECK_RUNS)';
    // An organization's webhook tells of every App's check runs and suites.
    if (app?.id !== config.githubApp?.id) return "another App's check run or suite";
    return undefined;
  }

  /** A build running is reset (initialized again); one undeployed is started again. */
  async function rerun(name: string): Promise<WebhookOutcome> {
    const workflow = await client.workflow
      .getHandle(buildWorkflowId(name))
      .describe()
      .catch((error: unknown) => {
        if (error instanceof WorkflowNotFoundError) return undefined;
        throw error;
      });
    if (!workflow) return ignored(`build ${name} is not known (any more): push again`);
    if (workflow.status.name === 'RUNNING') {
      try {
        const outcome = await sendBuildCommand(client, name, 'reset');
        return { outcome: 'reset', detail: `build ${name}: reset ${outcome}`, builds: [name] };
      } catch (error) {
        if (error instanceof CommandRefusedError) return ignored(error.message);
        throw error;
      }
    }
    const build = buildFromSearchAttributes(workflow.typedSearchAttributes);
    if (!build || !findRepoSettings(config, build.commit.repo, build.commit.target_branch))
      return ignored(`build ${name} cannot be started again: its repo or branch is not configured`);
    // Asked for by name, it may be an older commit than the ref's newest build, which the per-ref
    // cap would undeploy in its stead; the ref's next push applies the cap again.
    return start(build.commit, { capRef: false });
  }

  /** "Re-run all checks": every build of the commit, deployed or not (one check run each). */
  async function rerunCommit(repo: string, sha: string): Promise<WebhookOutcome> {
    const builds = (await listBuildsRunningOrEnded(client, config.taskQueue, { repo, commit: sha })).slice(
      0,
      MAX_RERUNS_OF_A_COMMIT,
    );
    if (!builds.length) return ignored(`no build of ${repo} ${sha}`);
    const outcomes: WebhookOutcome[] = [];
    for (const { name } of builds) outcomes.push(await rerun(name));
    return {
      outcome: outcomes.find(({ outcome }) => outcome !== 'ignored')?.outcome ?? 'ignored',
      detail: outcomes.map(({ detail }) => detail).join('; '),
      builds: outcomes.flatMap(({ builds }) => builds),
    };
  }

  async function undeploy(
    filter: Parameters<typeof undeployBuilds>[2],
    why: string,
    newest?: CommitInfo,
  ): Promise<WebhookOutcome> {
    const builds = await undeployBuilds(client, config, filter, newest);
    return { outcome: 'undeployed', detail: why, builds };
  }

  return router;
}

/**
 * @octokit/webhooks is published as ES modules only, and its own dependency declares no
 * CommonJS entry: a dynamic import loads it from this CommonJS module under plain Node too.
 */
export async function webhookVerifier(secret: string): Promise<Webhooks> {
  const { Webhooks } = await import('@octokit/webhooks');
  return new Webhooks({ secret });
}

/**
 * A configured repo's branch that git could not have made (`../../x`) is a malformed payload:
 * 400, as for a sha that is not one, before anything is started or undeployed.
 */
function checkBranch(name: string): void {
  const problem = branchNameProblem(name);
  if (problem) throw new HttpError(400, `invalid payload: branch ${JSON.stringify(name)} ${problem}`);
}
