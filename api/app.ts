import { createHash, timingSafeEqual } from 'node:crypto';
import type { Client } from '@temporalio/client';
import express, { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import type { GitHub } from '../activities/github';
import type { BuildCluster } from '../activities/kubernetes';
import { branchNameProblem } from '../common/build';
import { findRepoSettings, type Config } from '../common/config';
import { BUILD_STATUSES, type BuildCommand } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import { LOG_PAGE_CSP, ansiToHtmlPage } from './ansi-html';
import { boundedCalls } from './backend';
import {
  countBuilds,
  getBuildState,
  listBuilds,
  runboatOrder,
  sendBuildCommand,
  startBuild,
  undeployBuilds,
} from './build-client';
import { BUILD_COMMAND_RATE, rateLimited } from './rate-limit';
import { errorHandler, HttpError } from './errors';
import { BuildEvents } from './events';
import { openApiDocument } from './openapi';
import { uiRouter } from './ui';
import { buildJson, listedBuildJson, statusFromCounts } from './views';
import { createMetrics } from './metrics';
import { webhookRouter } from './webhooks';
import { forceUndeployBuild } from './build-client';
import { Visits } from './visits';
import { wakeHandler } from './wake';

// The HTTP API, runboat's paths and fields. The process holds no state of its own: every
// answer comes from Temporal (and pod logs from Kubernetes), so API processes scale out.

export interface ApiDependencies {
  config: Config;
  client: Client;
  cluster: BuildCluster;
  github: GitHub;
  /** Deadline of each backend call (default BACKEND_TIMEOUT_MS); tests shorten it. */
  backendTimeoutMs?: number;
}

const repo = z
  .string()
  .regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'must be owner/name')
  .transform((value) => value.toLowerCase());
const branch = z.string().superRefine((value, context) => {
  const problem = branchNameProblem(value);
  if (problem) context.addIssue({ code: 'custom', message: problem });
});
const pr = z.coerce.number().int().positive();
const status = z.enum(BUILD_STATUSES);
const buildName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'is not a build name');

const filterQuery = z.object({
  repo: repo.optional(),
  target_branch: branch.optional(),
  branch: branch.optional(),
  pr: pr.optional(),
});

/**
 * runboat skips an empty text filter (`?target_branch=`: its `if target_branch:`), so these
 * endpoints drop them before validation; an empty `pr` or `status` stays an error, as runboat's
 * FastAPI answers 422 to it. `DELETE /builds` with only empty filters is thus "no filter".
 */
function ignoringEmptyFilters(query: Record<string, unknown>): Record<string, unknown> {
  const textFilters = new Set(['repo', 'target_branch', 'branch', 'build_name']);
  return Object.fromEntries(
    Object.entries(query).filter(([key, value]) => !(textFilters.has(key) && value === '')),
  );
}

function parseQuery<T>(schema: z.ZodType<T>, query: unknown): T {
  const parsed = schema.safeParse(query);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HttpError(400, `${issue.path.join('.')} ${issue.message}`);
  }
  return parsed.data;
}

const sha256 = (value: string) => createHash('sha256').update(value).digest();

function adminOnly(config: Config): RequestHandler {
  return (request, _response, next) => {
    const match = /^Basic (.+)$/i.exec(request.get('authorization') ?? '');
    const [user, ...rest] = match ? Buffer.from(match[1], 'base64').toString('utf8').split(':') : [];
    const password = rest.join(':');
    // Constant time: compare digests of equal length, and both fields whatever the first gives.
    const userOk = timingSafeEqual(sha256(user ?? ''), sha256(config.adminUser));
    const passwordOk = timingSafeEqual(sha256(password), sha256(config.adminPassword ?? ''));
    if (!match || !config.adminPassword || !userOk || !passwordOk) {
      _response.set('www-authenticate', 'Basic realm="runboat"');
      throw new HttpError(401, 'admin credentials required');
    }
    next();
  };
}

export interface Api {
  app: express.Express;
  events: BuildEvents;
  /** Method and OpenAPI-style path of every /api/v1 route, to hold the OpenAPI document to. */
  routes: Array<{ method: string; path: string }>;
}

export function createApp(deps: ApiDependencies): Api {
  const { config, cluster, github } = deps;
  const client = deps.client;
  // Every outbound call is bounded: an unreachable backend answers 503, never hangs.
  const bounded = boundedCalls(client, deps.backendTimeoutMs);
  const metrics = createMetrics(config, client, bounded, () => events.subscriberCount);
  const events = new BuildEvents(config, client, bounded, metrics.observeEventsPoll);
  const admin = adminOnly(config);
  const visits = new Visits(client);

  /** Answers 404 unless the build's workflow runs; needs no worker. */
  async function assertRunning(name: string): Promise<void> {
    const { status: workflowStatus } = await client.workflow.getHandle(buildWorkflowId(name)).describe();
    if (workflowStatus.name !== 'RUNNING') throw new HttpError(404, `build ${name} not found`);
  }

  async function runningBuild(name: string) {
    parseQuery(buildName, name);
    return bounded(async () => {
      await assertRunning(name);
      return getBuildState(client, name);
    });
  }

  const api = Router();

  api.get('/status', async (_request, response) => {
    response.json(statusFromCounts(config, await bounded(() => countBuilds(client, config))));
  });

  api.get('/repos', async (_request, response) => {
    const builds = await bounded(() => listBuilds(client, config));
    const names = [...new Set(builds.map((b) => b.commit.repo))].sort();
    response.json(names.map((name) => ({ name, link: `https://github.com/${name}` })));
  });

  api.get('/builds', async (request, response) => {
    const filter = parseQuery(
      filterQuery.extend({ status: status.optional() }),
      ignoringEmptyFilters(request.query),
    );
    const builds = await bounded(() => listBuilds(client, config, filter));
    response.json(runboatOrder(builds, 'desc').map((build) => listedBuildJson(config, build)));
  });

  api.delete('/builds', admin, async (request, response) => {
    const filter = parseQuery(filterQuery, ignoringEmptyFilters(request.query));
    if (Object.values(filter).every((value) => value === undefined)) {
      throw new HttpError(400, 'give at least one of repo, target_branch, branch, pr');
    }
    response.json({ undeployed: await bounded(() => undeployBuilds(client, config, filter)) });
  });

  api.post('/builds/trigger/branch', admin, async (request, response) => {
    const query = parseQuery(z.object({ repo, branch }), request.query);
    if (!findRepoSettings(config, query.repo, query.branch)) {
      throw new HttpError(400, `${query.repo} ${query.branch} matches no RUNBOAT_REPOS entry`);
    }
    const commit = await github.branchHead(query.repo, query.branch);
    const build = await bounded(() => startBuild(client, config, commit));
    response.json({ name: build.name });
  });

  api.post('/builds/trigger/pr', admin, async (request, response) => {
    const query = parseQuery(z.object({ repo, pr }), request.query);
    const commit = await github.pullRequestHead(query.repo, query.pr);
    const build = await bounded(() => startBuild(client, config, commit));
    response.json({ name: build.name });
  });

  api.get('/builds/:name', async (request, response) => {
    const state = await runningBuild(request.params.name);
    response.json({ ...buildJson(config, state), last_error: state.last_error });
  });

  for (const [path, kind] of [
    ['init-log', 'initialize'],
    ['log', 'deployment'],
  ] as const) {
    api.get(`/builds/:name/${path}`, async (request, response) => {
      await runningBuild(request.params.name);
      const log = await cluster.readLog(request.params.name, kind);
      if (!log) throw new HttpError(404, 'No log found.');
      // runboat answers HTML (ansi2html) to everyone; clients that ask for text get the raw log.
      response.vary('accept');
      if (request.accepts(['text/html', 'text/plain']) === 'text/plain') {
        response.type('text/plain').send(log);
        return;
      }
      response
        .type('html')
        .set({ 'content-security-policy': LOG_PAGE_CSP, 'x-content-type-options': 'nosniff' })
        .send(ansiToHtmlPage(log, `${request.params.name} ${path}`));
    });
  }

  const command =
    (name: BuildCommand): RequestHandler =>
    async (request, response) => {
      // No query first: a command is accepted (kept by Temporal) even while no worker runs.
      const build = parseQuery(buildName, request.params.name);
      await bounded(async () => {
        await assertRunning(build);
        await sendBuildCommand(client, build, name);
      });
      response.json(null);
    };
  const perBuild = rateLimited(BUILD_COMMAND_RATE, (request) => {
    const name = String(request.params.name);
    return buildName.safeParse(name).success ? name : undefined;
  });
  api.post('/builds/:name/start', perBuild, command('start'));
  api.post('/builds/:name/stop', perBuild, command('stop'));
  api.post('/builds/:name/reset', perBuild, command('reset'));
  const undeploy = command('undeploy');
  api.delete('/builds/:name', admin, async (request, response, next) => {
    const { force, reason } = parseQuery(
      z.object({ force: z.enum(['true', 'false']).optional(), reason: z.string().max(500).optional() }),
      request.query,
    );
    if (force !== 'true') return undeploy(request, response, next);
    // Also for a build already undeploying: that is what forcing is for (a stuck cleanup job).
    const state = await runningBuild(String(request.params.name));
    await bounded(() => forceUndeployBuild(client, state.name, reason ?? 'forced by an admin'));
    response.json(null);
  });

  api.post('/builds/:name/visit', async (request, response) => {
    const state = await runningBuild(String(request.params.name));
    // Rate-limited per build: at most one signal a minute, however many tabs are open.
    await visits.record(state.name);
    response.status(204).end();
  });

  api.get('/build-events', async (request, response) => {
    const filter = parseQuery(
      filterQuery.extend({ build_name: buildName.optional() }),
      ignoringEmptyFilters(request.query),
    );
    const { build_name: name, ...rest } = filter;
    // Not under `bounded`: the stream outlives any one deadline (the poller takes its own).
    await events.subscribe({ ...rest, name }, response);
  });

  api.get('/openapi.json', (_request, response) => {
    response.json(openApiDocument(config));
  });

  const app = express();
  app.disable('x-powered-by');
  app.use(metrics.timeRequests);
  app.use(wakeHandler({ config, client, bounded, visits }));
  app.get('/metrics', async (_request, response) => {
    response.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/healthz', (_request, response) => {
    response.json({ status: 'ok' });
  });
  app.get('/readyz', async (_request, response) => {
    await bounded(() => client.workflowService.getSystemInfo({}));
    response.json({ status: 'ready' });
  });
  app.use(webhookRouter(config, client, metrics.observeWebhook, bounded));
  app.use('/api/v1', api);
  app.use(uiRouter({ config, client, bounded, visits }));
  app.use('/api/v1', (_request, _response) => {
    throw new HttpError(404, 'no such endpoint');
  });
  app.use(errorHandler);
  const routes = api.stack.flatMap((layer) =>
    layer.route
      ? Object.keys((layer.route as unknown as { methods: Record<string, boolean> }).methods).map(
          (method) => ({
            method,
            path: String(layer.route?.path).replace(/:(\w+)/g, '{$1}'),
          }),
        )
      : [],
  );
  return { app, events, routes };
}
