import type { Client } from '@temporalio/client';
import type { Response } from 'express';
import { logTail } from '../common/ansi';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import { buildWorkflowId } from '../workflows/definitions';
import type { Bounded } from './backend';
import { getBuildState, sendBuildCommand } from './build-client';
import { escapeHtml, securityHeaders, sendPage } from './pages';
import { buildJson } from './views';
import type { StoppedOpeningObserver } from './visitors';
import type { Visits } from './visits';

// `/builds/{name}?live` and the wake handler's page: start a stopped build and take the visitor
// to it once it is up.

/** The end of a failed init's log on its pages: what a screen shows, the rest a link away. */
const INIT_LOG_TAIL_LINES = 60;
const INIT_LOG_TAIL_CHARS = 20_000;

export interface UiDependencies {
  config: Config;
  client: Client;
  bounded: Bounded;
  /** A build's init log, as `/init-log` serves it (the pod's, or the copy kept after a failure). */
  readInitLog?: (name: string) => Promise<string | undefined>;
  /** Counts `?live` openings as visits (idle stop); none in tests that do not need it. */
  visits?: Visits;
  observeStoppedOpening?: StoppedOpeningObserver;
}

/** How the live page is served: on this service's host, or on a build's host (wake on visit). */
export interface LivePageOptions {
  /** Served on the build's own host: reload the page once the build is up, link back absolutely. */
  wake?: boolean;
  /**
   * Opened by a person in a browser (`isPersonOpening`): only then does the page start a stopped
   * build and count a visit. Anyone else gets the page with a button that starts it.
   */
  byPerson: boolean;
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
  options: LivePageOptions,
): Promise<void> {
  const { config, client, bounded } = deps;
  response.set(securityHeaders(config));
  // Linked from public pull requests: search engines that follow the links keep it out of their
  // index, as they keep away from the build's hosts (robots.txt).
  response.set('x-robots-tag', 'noindex, nofollow');
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
  if (opening && options.byPerson) void deps.visits?.record(name);
  if (state.status === 'started' && !options.wake) {
    response.set('cache-control', 'no-store').redirect(302, json.deploy_link);
    return;
  }
  if (state.status === 'stopped') {
    deps.observeStoppedOpening?.(options.byPerson ? 'person' : 'other');
    if (options.byPerson) await bounded(() => sendBuildCommand(client, name, 'start'));
  }
  const leftStopped = state.status === 'stopped' && !options.byPerson;
  const buildLink = `${base}/builds/${encodeURIComponent(name)}`;
  const title = `${json.commit_info.repo} ${json.commit_info.pr ? `PR #${json.commit_info.pr}` : json.commit_info.target_branch}`;
  const failed = state.status === 'failed';
  const undeploying = state.status === 'undeploying';
  // Where a pull request's "View deployment" leads: a failed init says why here too, to people
  // (on a build's host every request comes here; reading a log for each crawler's is not owed).
  const failure =
    failed && state.init_status === 'failed' && options.byPerson
      ? await failedInitLogTail(deps, name)
      : undefined;
  const message = failed
    ? `This build failed to initialize${state.last_error ? `: ${escapeHtml(state.last_error)}` : '.'}`
    : undeploying
      ? 'This build is being undeployed; it cannot be started.'
      : leftStopped
        ? 'This build is stopped.'
        : 'Starting the build. This page takes you to it as soon as it is up.';
  // A stopped build is not coming up by itself: what is not a person need not come back soon.
  if (options.wake) response.set('retry-after', leftStopped ? '3600' : '5');
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
${leftStopped ? '<p><button id="live-start" type="button" class="action">Start the build</button></p>\n' : ''}<div id="live-spinner" class="spinner"${failed || undeploying || leftStopped ? ' hidden' : ''} aria-hidden="true"></div>
<p id="live-failed"${failed ? '' : ' hidden'}><a href="${escapeHtml(base)}/api/v1/builds/${escapeHtml(encodeURIComponent(name))}/init-log">Read the init log</a> · <a href="${escapeHtml(buildLink)}">Open the build page</a> to reset it.</p>
${failure ? `<pre class="log-tail" id="live-log" tabindex="0">${escapeHtml(failure.text)}</pre>\n` : ''}</section>`,
    'live.js',
  );
}

/** The end of an init's log as its pages show it: plain text, its last lines. */
export const initLogTail = (log: string) => logTail(log, INIT_LOG_TAIL_LINES, INIT_LOG_TAIL_CHARS);

/** The end of a failed init's log for the live page; undefined when there is none or it cannot be read. */
async function failedInitLogTail(deps: UiDependencies, name: string) {
  const log = await deps.readInitLog?.(name).catch((error: unknown) => {
    logger.warn({ err: error, build: name }, 'live page: init log unavailable');
    return undefined;
  });
  return log === undefined ? undefined : initLogTail(log);
}
