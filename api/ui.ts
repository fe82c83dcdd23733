import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, optionalTsToDate, type SearchAttributes } from '@temporalio/common';
import { decodeSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { temporal } from '@temporalio/proto';
import express, { Router, type RequestHandler, type Response } from 'express';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import { searchAttributes } from '../common/search-attributes';
import { buildWorkflowId, commandUpdate } from '../workflows/definitions';
import type { Bounded } from './backend';
import { getBuildState, sendBuildCommand } from './build-client';
import { describeError, HttpError, logRequestError } from './errors';
import { buildJson } from './views';
import type { Visits } from './visits';

// The Web UI (SPEC §7): static pages under api/ui/ that read the JSON API and its build
// events from the browser, plus what needs the server: `/builds/{name}?live`, which starts a
// stopped build and redirects to it, and a build's timeline, read from its workflow history.
// Nothing is loaded from a CDN; every page sends a strict Content-Security-Policy.

export interface UiDependencies {
  config: Config;
  client: Client;
  bounded: Bounded;
  /** Counts `?live` openings as visits (idle stop); none in tests that do not need it. */
  visits?: Visits;
}

/** How the live page is served: on this service's host, or on a build's host (wake on visit). */
export interface LivePageOptions {
  /** Served on the build's own host: reload the page once the build is up, link back absolutely. */
  wake?: boolean;
}

const ASSETS = path.join(__dirname, 'ui');
const BUILD_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The pages' headers. RUNBOAT_ADDITIONAL_FOOTER_HTML is the operator's own HTML: it may show
 * images from elsewhere (runboat's footer shows logos), so https images are allowed when it is
 * set; scripts and inline styles stay refused, footer or not.
 */
function securityHeaders(config: Config): Record<string, string> {
  const images = config.additionalFooterHtml ? "'self' data: https:" : "'self' data:";
  return {
    'content-security-policy':
      `default-src 'none'; script-src 'self'; style-src 'self'; img-src ${images}; connect-src 'self'; ` +
      "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  };
}

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/**
 * A page in the UI's frame; `body` must already be escaped. `footerHtml` is
 * RUNBOAT_ADDITIONAL_FOOTER_HTML: configured by the operator, trusted, inserted as is.
 */
function page(title: string, body: string, script: string | undefined, footerHtml: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · runboat</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/style.css">
${script ? `<script type="module" src="/ui/${script}"></script>` : ''}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/">runboat</a><nav aria-label="Main"><a href="/">Repositories</a> <a href="/builds">All builds</a> <a href="/status">Status</a></nav></header>
<main id="main">
${body}
</main>
${footerHtml ? `<footer class="site-footer">\n${footerHtml}\n</footer>\n` : ''}</body>
</html>
`;
}

function sendPage(
  config: Config,
  response: Response,
  status: number,
  title: string,
  body: string,
  script?: string,
): void {
  response
    .status(status)
    .type('html')
    .set('cache-control', 'no-store')
    .send(page(title, body, script, config.additionalFooterHtml));
}

/**
 * The page that opens a build (`/builds/{name}?live`, and the wake handler on a build's host):
 * redirects to a started build, starts a stopped one and waits on a page that follows the
 * build's events, says when it failed. The one place for that page.
 */
export async function serveLivePage(
  deps: UiDependencies,
  name: string,
  response: Response,
  options: LivePageOptions = {},
): Promise<void> {
  const { config, client, bounded } = deps;
  response.set(securityHeaders(config));
  let state;
  try {
    state = await bounded(async () => {
      const { status } = await client.workflow.getHandle(buildWorkflowId(name)).describe();
      return status.name === 'RUNNING' ? getBuildState(client, name) : undefined;
    });
  } catch (error) {
    if ((error as Error).name !== 'WorkflowNotFoundError') {
      logger.warn({ err: error, build: name }, 'live page: build state unavailable');
      sendPage(
        config,
        response,
        503,
        'Unavailable',
        '<h1>runboat cannot reach its backend</h1><p>Please try again in a moment.</p>',
      );
      return;
    }
  }
  // On this host, links are relative; on a build's host they must lead back to this service.
  const base = options.wake ? config.baseUrl : '';
  if (!state) {
    sendPage(
      config,
      response,
      404,
      'Build not found',
      `<h1>Build not found</h1><p>There is no build named <code>${escapeHtml(name)}</code>: it may have been undeployed. ` +
        `<a href="${escapeHtml(base)}/builds">See the builds that exist</a>.</p>`,
    );
    return;
  }
  const json = buildJson(config, state);
  const opening = state.status !== 'failed' && state.status !== 'undeploying';
  if (opening) void deps.visits?.record(name);
  if (state.status === 'started' && !options.wake) {
    response.set('cache-control', 'no-store').redirect(302, json.deploy_link);
    return;
  }
  if (state.status === 'stopped') {
    await bounded(() => sendBuildCommand(client, name, 'start'));
  }
  const buildLink = `${base}/builds/${encodeURIComponent(name)}`;
  const title = `${json.commit_info.repo} ${json.commit_info.pr ? `PR #${json.commit_info.pr}` : json.commit_info.target_branch}`;
  const failed = state.status === 'failed';
  const undeploying = state.status === 'undeploying';
  const message = failed
    ? `This build failed to initialize${state.last_error ? `: ${escapeHtml(state.last_error)}` : '.'}`
    : undeploying
      ? 'This build is being undeployed; it cannot be started.'
      : 'Starting the build. This page takes you to it as soon as it is up.';
  if (options.wake) response.set('retry-after', '5');
  sendPage(
    config,
    response,
    // On the build's host, the build is not there (yet): say so to clients that are not people.
    options.wake ? 503 : 200,
    `Opening ${name}`,
    `<section class="live" data-build="${escapeHtml(name)}" data-deploy-link="${escapeHtml(json.deploy_link)}"${options.wake ? ' data-reload="true"' : ''}>
<h1>${escapeHtml(title)}</h1>
<p class="muted">Build <a href="${escapeHtml(buildLink)}">${escapeHtml(name)}</a> · commit <a href="${escapeHtml(json.repo_commit_link)}"><code>${escapeHtml(json.commit_info.git_commit.slice(0, 8))}</code></a></p>
<p class="status-line">Status: <span id="live-status" class="badge status-${escapeHtml(state.status)}" role="status" aria-live="polite">${escapeHtml(state.status)}</span></p>
<p id="live-message" aria-live="polite">${message}</p>
<div id="live-spinner" class="spinner"${failed || undeploying ? ' hidden' : ''} aria-hidden="true"></div>
<p id="live-failed"${failed ? '' : ' hidden'}><a href="${escapeHtml(base)}/api/v1/builds/${escapeHtml(encodeURIComponent(name))}/init-log">Read the init log</a> · <a href="${escapeHtml(buildLink)}">Open the build page</a> to reset it.</p>
</section>`,
    'live.js',
  );
}

/** One human-readable entry of a build's timeline. */
export interface TimelineEntry {
  time: string;
  kind: 'created' | 'status' | 'signal' | 'run' | 'ended';
  text: string;
  status?: string;
  init_status?: string;
  signal?: string;
}

export interface Timeline {
  workflow_id: string;
  run_id: string | null;
  entries: TimelineEntry[];
}

const SIGNAL_TEXT: Record<string, string> = {
  start: 'Start requested',
  stop: 'Stop requested',
  reset: 'Reset requested (initialize again)',
  undeploy: 'Undeploy requested',
  forceUndeploy: 'Undeploy forced by an admin (cleanup job given up)',
  initSlotGranted: 'Initialization slot granted',
};

const INIT_TEXT: Record<string, string> = {
  todo: 'waiting for an initialization slot',
  started: 'initializing the database',
  succeeded: 'initialized',
  failed: 'initialization failed',
};

/**
 * The build's transitions, from the history of its (current) workflow run: each status change
 * is an upsert of the RunboatStatus/RunboatInitStatus search attributes; signals are commands.
 */
export function timelineFromHistory(history: temporal.api.history.v1.IHistory): TimelineEntry[] {
  const EventType = temporal.api.enums.v1.EventType;
  const entries: TimelineEntry[] = [];
  let status: string | undefined;
  let initStatus: string | undefined;
  const single = (attributes: SearchAttributes, name: string) => {
    const values = attributes[name] as unknown[] | undefined;
    return values && values.length ? String(values[0]) : undefined;
  };
  const observe = (time: string, attributes: SearchAttributes, kind: 'created' | 'status') => {
    const nextStatus = single(attributes, searchAttributes.status.name) ?? status;
    const nextInit = single(attributes, searchAttributes.initStatus.name) ?? initStatus;
    if (kind === 'status' && nextStatus === status && nextInit === initStatus) return;
    const parts: string[] = [];
    if (nextStatus) parts.push(nextStatus.charAt(0).toUpperCase() + nextStatus.slice(1));
    if (nextInit && nextInit !== initStatus) parts.push(INIT_TEXT[nextInit] ?? nextInit);
    const prefix = kind === 'created' ? 'Build created' : '';
    const text = [prefix, parts.join(' — ')].filter(Boolean).join(': ');
    entries.push({ time, kind, text, status: nextStatus, init_status: nextInit });
    [status, initStatus] = [nextStatus, nextInit];
  };
  for (const event of history.events ?? []) {
    const time = (optionalTsToDate(event.eventTime) ?? new Date(0)).toISOString();
    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: {
        const attributes = event.workflowExecutionStartedEventAttributes;
        const decoded = decodeSearchAttributes(attributes?.searchAttributes?.indexedFields);
        if (attributes?.continuedExecutionRunId) {
          entries.push({ time, kind: 'run', text: 'History continued in a new workflow run' });
          observe(time, decoded, 'status');
        } else observe(time, decoded, 'created');
        break;
      }
      case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        observe(
          time,
          decodeSearchAttributes(
            event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields,
          ),
          'status',
        );
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: {
        const signal = event.workflowExecutionSignaledEventAttributes?.signalName ?? 'signal';
        // Visits only postpone the idle stop: one a minute of use would drown the timeline.
        if (signal === 'visited') break;
        entries.push({ time, kind: 'signal', signal, text: SIGNAL_TEXT[signal] ?? `Signal ${signal}` });
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: {
        // Commands arrive as updates (refused ones leave no event); the signals above are the
        // same commands sent while no worker could answer.
        const input = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input;
        const [argument] = input?.args?.payloads ?? [];
        const command = argument ? defaultPayloadConverter.fromPayload<string>(argument) : undefined;
        if (input?.name !== commandUpdate.name || !command) break;
        entries.push({
          time,
          kind: 'signal',
          signal: command,
          text: SIGNAL_TEXT[command] ?? `Command ${command}`,
        });
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        entries.push({ time, kind: 'run', text: 'Workflow continued as new (history goes on there)' });
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        entries.push({ time, kind: 'ended', text: 'Undeployed: the build is gone' });
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        entries.push({ time, kind: 'ended', text: 'The build workflow ended abnormally' });
        break;
    }
  }
  return entries;
}

export function uiRouter(deps: UiDependencies): Router {
  const { config, client, bounded } = deps;
  const headers = securityHeaders(config);
  const secured: RequestHandler = (_request, response, next) => {
    response.set(headers);
    next();
  };
  /** A page whose <main> is a file of api/ui/, framed like every other page once, at start. */
  const framed = (name: string, title: string, script: string) =>
    page(title, readFileSync(path.join(ASSETS, name), 'utf8'), script, config.additionalFooterHtml);
  const serve = (html: string): RequestHandler => {
    return (_request, response) => {
      response.set('cache-control', 'no-cache').type('html').send(html);
    };
  };
  const homePage = serve(framed('home.html', 'Repositories', 'home.js'));
  const buildPage = framed('build.html', 'Build', 'build.js');
  const validName = (name: string) => {
    if (!BUILD_NAME.test(name)) throw new HttpError(400, `${name} is not a build name`);
    return name;
  };

  const ui = Router();
  ui.use('/ui', secured, express.static(ASSETS, { index: false, maxAge: '5m' }), (_request, response) => {
    response.status(404).type('text/plain').send('not found');
  });
  ui.get('/', secured, homePage);
  ui.get('/status', secured, homePage);
  ui.get('/builds', secured, serve(framed('board.html', 'Builds', 'board.js')));

  // runboat's own pages live at /webui/builds.html?repo=… and /webui/build.html?name=…: links
  // to them (bookmarks, chat, runboat's build page) land on the same pages here.
  ui.get('/webui/builds.html', (request, response) => {
    const query = request.originalUrl.indexOf('?');
    response.redirect(301, `/builds${query === -1 ? '' : request.originalUrl.slice(query)}`);
  });
  ui.get('/webui/build.html', (request, response) => {
    const name = typeof request.query.name === 'string' ? validName(request.query.name) : undefined;
    response.redirect(301, name ? `/builds/${name}` : '/builds');
  });

  ui.get('/builds/:name/timeline.json', async (request, response) => {
    const name = validName(String(request.params.name));
    const handle = client.workflow.getHandle(buildWorkflowId(name));
    // One after the other: describe says whether the build exists (WorkflowNotFoundError, a
    // 404); run side by side, whichever of the two failed first decided the status.
    const { description, history } = await bounded(async () => {
      const described = await handle.describe();
      const run = client.workflow.getHandle(handle.workflowId, described.runId);
      return { description: described, history: await run.fetchHistory() };
    });
    const timeline: Timeline = {
      workflow_id: handle.workflowId,
      run_id: description.runId ?? null,
      entries: timelineFromHistory(history),
    };
    response.set('cache-control', 'no-store').json(timeline);
  });

  ui.get('/builds/:name', secured, async (request, response) => {
    const name = String(request.params.name);
    if (!BUILD_NAME.test(name)) {
      sendPage(
        config,
        response,
        400,
        'Bad build name',
        '<h1>Not a build name</h1><p><a href="/">Home</a></p>',
      );
      return;
    }
    if (request.query.live === undefined) {
      response.set('cache-control', 'no-cache').type('html').send(buildPage);
      return;
    }
    await serveLivePage(deps, name, response);
  });

  // Errors on UI pages are pages too; JSON routes (timeline.json) leave them to the app's handler.
  ui.use(['/builds', '/status'], ((error, request, response, next) => {
    if (request.path.endsWith('.json') || response.headersSent) return next(error);
    const { status, detail } = describeError(error);
    logRequestError(error, request, status);
    sendPage(config, response, status, 'Error', `<h1>Something went wrong</h1><p>${escapeHtml(detail)}</p>`);
  }) as express.ErrorRequestHandler);
  return ui;
}
