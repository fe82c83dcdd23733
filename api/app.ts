import type { Client } from '@temporalio/client';
import express from 'express';
import type { GitHub } from '../common/github';
import type { BuildCluster } from '../common/kubernetes';
import type { Config } from '../common/config';
import { BACKEND_TIMEOUT_MS, boundedCalls } from './backend';
import { BuildIndex } from '../common/build-index';
import { errorHandler, HttpError } from './errors';
import { BuildEvents } from './events';
import { healthRouter } from './health';
import { InitQueue } from './init-queue';
import { createMetrics } from './metrics';
import { routeList, type RouteEntry } from './route-list';
import { restRouter } from './routes';
import { uiRouter } from './ui';
import { Visits } from './visits';
import { wakeHandler } from './wake';
import { webhookRouter } from './webhooks';

// The HTTP service, assembled: every answer comes from Temporal (and pod logs from
// Kubernetes), so API processes scale out. The one state a process keeps, its index of the builds'
// repos and statuses (build-index.ts), comes from Temporal and agrees with other processes'
// within its bound.

export interface ApiDependencies {
  config: Config;
  client: Client;
  cluster: BuildCluster;
  github: GitHub;
  /** Deadline of each backend call (default BACKEND_TIMEOUT_MS); tests shorten it. */
  backendTimeoutMs?: number;
  /** How far back each read of the change feed looks (CHANGE_FEED_LOOKBACK_MS); tests shorten it. */
  eventsLookbackMs?: number;
}

export interface Api {
  app: express.Express;
  events: BuildEvents;
  index: BuildIndex;
  /** Method and OpenAPI-style path of every /api/v1 route, to hold the OpenAPI document to. */
  routes: RouteEntry[];
}

export function createApp(deps: ApiDependencies): Api {
  const { config, cluster, github, client } = deps;
  // Every outbound call is bounded: an unreachable backend answers 503, never hangs.
  const bounded = boundedCalls(client, deps.backendTimeoutMs);
  const index = new BuildIndex(
    client,
    config,
    deps.backendTimeoutMs ?? BACKEND_TIMEOUT_MS,
    deps.eventsLookbackMs,
    (kind, outcome) => metrics.observeIndexRead(kind, outcome),
  );
  const initQueue = new InitQueue(client, config, bounded);
  const metrics = createMetrics(config, client, bounded, index, initQueue, () => events.subscriberCount);
  const events = new BuildEvents(config, bounded, index, metrics.observeEventsPoll);
  const visits = new Visits(client);
  const api = restRouter({ config, client, cluster, github, bounded, events, index, visits, initQueue });

  const app = express();
  app.disable('x-powered-by');
  app.use(metrics.timeRequests);
  const { observeStoppedOpening } = metrics;
  const readInitLog = (name: string) => cluster.readLog(name, 'initialize');
  const pageDependencies = { config, client, bounded, readInitLog, visits, observeStoppedOpening };
  app.use(wakeHandler({ ...pageDependencies, index }));
  app.get('/metrics', metrics.serve);
  app.use(healthRouter(client, bounded));
  app.use(webhookRouter(config, client, metrics.observeWebhook, bounded));
  app.use('/api/v1', api);
  app.use(uiRouter(pageDependencies));
  app.use('/api/v1', (_request, _response) => {
    throw new HttpError(404, 'no such endpoint');
  });
  app.use(errorHandler);
  return { app, events, index, routes: routeList(api) };
}
