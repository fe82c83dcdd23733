import type { Client } from '@temporalio/client';
import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Config } from '../common/config';
import { BUILD_STATUSES } from '../common/types';
import type { OrphanSweep } from '../common/types';
import {
  githubReportsCountsQuery,
  githubReportsWorkflowId,
  orphanSweepScheduleId,
  webhookRedeliveryScheduleId,
  type GitHubReportsCounts,
} from '../workflows/definitions';
import { temporalRateLimitRefusals, type Bounded } from './backend';
import { lastScheduledResult } from '../common/schedules';
import type { WebhookRedelivery } from '../common/webhook-redelivery';
import type { BuildIndex, IndexReadObserver } from '../common/build-index';
import type { EventsPollObserver } from './events';
import type { InitQueue } from './init-queue';
import type { StoppedOpeningObserver } from './visitors';
import type { WebhookObserver } from './webhooks';

/** The events GitHub sends that are counted by name: those handled, and its `ping`. */
const WEBHOOK_EVENTS = new Set(['push', 'pull_request', 'delete', 'check_run', 'check_suite', 'ping']);

// Prometheus metrics of the API process, read from Temporal at scrape time (the builds' counts
// from the process's build index, so every API instance reports the same numbers within its
// bound). Activity latencies come from the worker's own endpoint.

export interface ApiMetrics {
  registry: Registry;
  observeWebhook: WebhookObserver;
  observeEventsPoll: EventsPollObserver;
  observeIndexRead: IndexReadObserver;
  observeStoppedOpening: StoppedOpeningObserver;
  timeRequests: RequestHandler;
  /** GET /metrics: the scrape. */
  serve: RequestHandler;
}

export function createMetrics(
  config: Config,
  client: Client,
  bounded: Bounded,
  index: BuildIndex,
  initQueue: InitQueue,
  eventSubscribers: () => number,
): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'runboat_builds',
    help: 'Deployed builds by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      // While Temporal is unreachable the scrape still answers, without this gauge's samples.
      // From the index: a scrape every 15 s must not cost O(builds), which even visibility's
      // counts do (SQL visibility counts the matching rows).
      const counts = await index.counts().catch(() => undefined);
      this.reset();
      for (const status of BUILD_STATUSES) {
        if (counts) this.set({ status }, counts.statuses[status]);
      }
    },
  });
  new Gauge({
    name: 'runboat_init_queue_length',
    help: 'Builds waiting for an init slot',
    registers: [registry],
    async collect() {
      const slots = await initQueue.slots().catch(() => undefined);
      this.set(slots?.waiting.length ?? 0);
    },
  });
  /** A gauge of what the newest finished run of a schedule returned; no sample before one. */
  const lastRunGauge = <T>(name: string, help: string, scheduleId: string, value: (result: T) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const result = await bounded(() => lastScheduledResult<T>(client, scheduleId)).catch(() => undefined);
        this.reset();
        if (result) this.set(value(result));
      },
    });
  lastRunGauge<OrphanSweep>(
    'runboat_orphan_objects_swept',
    'Objects of builds without a running workflow, deleted by the last finished orphan sweep',
    orphanSweepScheduleId(config),
    (swept) => swept.objects,
  );
  if (config.redeliverWebhooks.length)
    lastRunGauge<WebhookRedelivery>(
      'runboat_webhook_events_redelivered',
      'Webhook events the API failed to take (down, or Temporal unreachable) that the last finished redelivery run asked GitHub to send again',
      webhookRedeliveryScheduleId(config),
      (run) => run.redelivered,
    );
  registerGitHubReportMetrics(registry, config, () =>
    bounded(() =>
      client.workflow.getHandle(githubReportsWorkflowId(config.taskQueue)).query(githubReportsCountsQuery),
    ),
  );
  const webhooks = new Counter({
    name: 'runboat_webhooks_total',
    help: 'GitHub webhook deliveries by event and outcome',
    labelNames: ['event', 'outcome'],
    registers: [registry],
  });
  new Gauge({
    name: 'runboat_build_events_subscribers',
    help: 'Open /build-events streams of this API process',
    registers: [registry],
    collect() {
      this.set(eventSubscribers());
    },
  });
  const eventsPolls = new Counter({
    name: 'runboat_build_events_polls_total',
    help: "Reads of the build index's change feed told to /build-events (ok), and polls of it that failed, while a stream is open",
    labelNames: ['outcome'],
    registers: [registry],
  });
  const eventsListed = new Counter({
    name: 'runboat_build_events_listed_builds_total',
    help: "Builds of /build-events: a new stream's first builds (from the build index), then those its polls listed (the changes only)",
    registers: [registry],
  });
  const indexReads = new Counter({
    name: 'runboat_build_index_reads_total',
    help: "The build index's reads of Temporal visibility by kind (every build, the changes, a late read beside them) and outcome: reads of changes at most one per 400 ms for requests and /build-events together",
    labelNames: ['kind', 'outcome'],
    registers: [registry],
  });
  new Counter({
    name: 'runboat_temporal_rate_limited_total',
    help: "Calls to Temporal refused past a rate limit and asked again ~1.7 s later (most often visibility queries: raise the namespace's frontend.namespaceRPS.visibility)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(temporalRateLimitRefusals());
    },
  });
  const stoppedOpenings = new Counter({
    name: 'runboat_stopped_build_openings_total',
    help: "Openings of a stopped build's page (its host, or ?live) by a person, which start it, and by anything else (crawlers, unfurlers, an open tab's calls), which leave it stopped",
    labelNames: ['by'],
    registers: [registry],
  });
  const requests = new Histogram({
    name: 'runboat_http_request_duration_seconds',
    help: 'HTTP requests served, by route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  return {
    registry,
    // The event header is the sender's to choose, signed or not: an event outside GitHub's few
    // is "other", or each new name would add a series for as long as the process lives.
    observeWebhook: (event, outcome) =>
      webhooks.inc({ event: WEBHOOK_EVENTS.has(event) ? event : event ? 'other' : 'none', outcome }),
    observeEventsPoll: (outcome, listed = 0) => {
      eventsPolls.inc({ outcome });
      eventsListed.inc(listed);
    },
    observeIndexRead: (kind, outcome) => indexReads.inc({ kind, outcome }),
    observeStoppedOpening: (by) => stoppedOpenings.inc({ by }),
    timeRequests: (request, response, next) => {
      const end = requests.startTimer({ method: request.method });
      response.on('finish', () => {
        // The route pattern, not the path: build names must not become label values.
        const route = (request.route as { path?: string } | undefined)?.path ?? 'unmatched';
        end({ route: `${request.baseUrl}${route}`, status: String(response.statusCode) });
      });
      next();
    },
    serve: async (_request, response) => {
      response.type(registry.contentType).send(await registry.metrics());
    },
  };
}

/**
 * The GitHub reporter's queue, GitHub's wait and the reports given up, from one query per scrape
 * (a scrape collects the three together: they share it). No samples while the reporter is
 * not running (nothing reported yet), or when this service reports nothing to GitHub.
 */
function registerGitHubReportMetrics(
  registry: Registry,
  config: Config,
  readCounts: () => Promise<GitHubReportsCounts>,
): void {
  if (config.disableCommitStatuses && !config.githubDeployments) return;
  let scrape: Promise<GitHubReportsCounts | undefined> | undefined;
  const counts = () => {
    scrape ??= readCounts()
      .catch(() => undefined)
      .finally(() => setImmediate(() => (scrape = undefined)));
    return scrape;
  };
  new Gauge({
    name: 'runboat_github_reports_queued',
    help: 'Commit statuses and deployment statuses waiting to be sent to GitHub, by target',
    labelNames: ['target'],
    registers: [registry],
    async collect() {
      const read = await counts();
      this.reset();
      if (read) {
        this.set({ target: 'status' }, read.statuses);
        this.set({ target: 'deployment' }, read.deployments);
      }
    },
  });
  new Gauge({
    name: 'runboat_github_reports_wait_seconds',
    help: 'Seconds left of the wait GitHub asked for after refusing a report past its rate limit (0: none)',
    registers: [registry],
    async collect() {
      const read = await counts();
      this.reset();
      if (read)
        this.set(read.waitingUntil ? Math.max(Date.parse(read.waitingUntil) - Date.now(), 0) / 1000 : 0);
    },
  });
  new Counter({
    name: 'runboat_github_reports_given_up_total',
    help: 'Reports never sent to GitHub: it failed on them ten times in a row (5xx, network), or the queue was too long to carry over',
    registers: [registry],
    async collect() {
      const read = await counts();
      this.reset();
      if (read) this.inc(read.givenUp);
    },
  });
}
