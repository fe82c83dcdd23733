import type { Client } from '@temporalio/client';
import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import type { GitHub } from '../common/github';
import type { BuildCluster } from '../common/kubernetes';
import { findRepoSettings, type Config } from '../common/config';
import type { BuildCommand } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import { LOG_PAGE_CSP, ansiToHtmlPage } from './ansi-html';
import { adminOnly } from './auth';
import type { Bounded } from './backend';
import {
  forceUndeployBuild,
  getBuildState,
  sendBuildCommand,
  startBuild,
  undeployBuilds,
} from './build-client';
import { HttpError } from './errors';
import { runboatOrder } from '../common/build-list';
import type { BuildEvents } from './events';
import { openApiDocument } from './openapi';
import type { BuildIndex } from '../common/build-index';
import { BUILD_COMMAND_RATE, rateLimited } from './rate-limit';
import {
  branch,
  buildName,
  filterQuery,
  ignoringEmptyFilters,
  parseOr400,
  pr,
  repo,
  status,
} from './schemas';
import { buildJson, listedBuildJson, statusFromCounts } from './views';
import type { Visits } from './visits';
import type { InitQueue } from './init-queue';

// The REST API under /api/v1, runboat's paths and fields. Every answer comes from Temporal (and
// pod logs from Kubernetes), so API processes scale out.

export interface RestDependencies {
  config: Config;
  client: Client;
  cluster: BuildCluster;
  github: GitHub;
  bounded: Bounded;
  events: BuildEvents;
  index: BuildIndex;
  visits: Visits;
  initQueue: InitQueue;
}

export function restRouter(deps: RestDependencies): Router {
  const { config, client, cluster, github, bounded, events, index, visits, initQueue } = deps;
  const admin = adminOnly(config);

  /** Answers 404 unless the build's workflow runs; needs no worker. */
  async function assertRunning(name: string): Promise<void> {
    const { status: workflowStatus } = await client.workflow.getHandle(buildWorkflowId(name)).describe();
    if (workflowStatus.name !== 'RUNNING') throw new HttpError(404, `build ${name} not found`);
  }

  async function runningBuild(name: string) {
    parseOr400(buildName, name);
    return bounded(async () => {
      await assertRunning(name);
      return getBuildState(client, name);
    });
  }

  const api = Router();

  api.get('/status', async (_request, response) => {
    response.json(statusFromCounts(config, await index.counts()));
  });

  api.get('/repos', async (_request, response) => {
    const names = await index.repos();
    response.json(names.map((name) => ({ name, link: `https://github.com/${name}` })));
  });

  api.get('/builds', async (request, response) => {
    const filter = parseOr400(
      filterQuery.extend({ status: status.optional() }),
      ignoringEmptyFilters(request.query),
    );
    const builds = await index.list(filter);
    response.json(runboatOrder(builds, 'desc').map((build) => listedBuildJson(config, build)));
  });

  api.delete('/builds', admin, async (request, response) => {
    const filter = parseOr400(filterQuery, ignoringEmptyFilters(request.query));
    if (Object.values(filter).every((value) => value === undefined)) {
      throw new HttpError(400, 'give at least one of repo, target_branch, branch, pr');
    }
    response.json({ undeployed: await bounded(() => undeployBuilds(client, config, filter)) });
  });

  api.post('/builds/trigger/branch', admin, async (request, response) => {
    const query = parseOr400(z.object({ repo, branch }), request.query);
    if (!findRepoSettings(config, query.repo, query.branch)) {
      throw new HttpError(400, `${query.repo} ${query.branch} matches no RUNBOAT_REPOS entry`);
    }
    const commit = await github.branchHead(query.repo, query.branch);
    const build = await bounded(() => startBuild(client, config, commit));
    response.json({ name: build.name });
  });

  api.post('/builds/trigger/pr', admin, async (request, response) => {
    const query = parseOr400(z.object({ repo, pr }), request.query);
    const commit = await github.pullRequestHead(query.repo, query.pr);
    const build = await bounded(() => startBuild(client, config, commit));
    response.json({ name: build.name });
  });

  api.get('/builds/:name', async (request, response) => {
    const state = await runningBuild(request.params.name);
    response.json({ ...buildJson(config, state), last_error: state.last_error });
  });

  // Polled by the build's pages while it waits for an init slot: no Temporal call of its own.
  api.get('/builds/:name/init-queue', async (request, response) => {
    const name = parseOr400(buildName, request.params.name);
    response.set('cache-control', 'no-store').json(await initQueue.placeOf(name));
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
      const build = parseOr400(buildName, request.params.name);
      await bounded(async () => {
        await assertRunning(build);
        await sendBuildCommand(client, build, name);
      });
      response.json(null);
    };
  // Only names a build can have take a bucket: hostile names would otherwise fill the limiter.
  const perBuild = rateLimited(BUILD_COMMAND_RATE, (request) => {
    const name = String(request.params.name);
    return buildName.safeParse(name).success ? name : undefined;
  });
  api.post('/builds/:name/start', perBuild, command('start'));
  api.post('/builds/:name/stop', perBuild, command('stop'));
  api.post('/builds/:name/reset', perBuild, command('reset'));
  const undeploy = command('undeploy');
  api.delete('/builds/:name', admin, async (request, response, next) => {
    const { force, reason } = parseOr400(
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
    const filter = parseOr400(
      filterQuery.extend({
        build_name: buildName.optional(),
        changes_only: z.enum(['true', 'false']).optional(),
      }),
      ignoringEmptyFilters(request.query),
    );
    const { build_name: name, changes_only: changesOnly, ...rest } = filter;
    // Not under `bounded`: the stream outlives any one deadline (the poller takes its own).
    await events.subscribe({ ...rest, name }, response, changesOnly === 'true');
  });

  api.get('/openapi.json', (_request, response) => {
    response.json(openApiDocument(config));
  });

  return api;
}
