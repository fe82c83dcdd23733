import { readFileSync } from 'node:fs';
import path from 'node:path';
import express, { Router, type RequestHandler } from 'express';
import { BUILD_NAME_PATTERN } from '../common/build';
import { buildWorkflowId } from '../workflows/definitions';
import { describeError, HttpError, logRequestError } from './errors';
import { initLogTail, serveLivePage, type UiDependencies } from './live-page';
import { isPersonOpening } from './visitors';
import { escapeHtml, page, securityHeaders, sendPage } from './pages';
import { readTimeline } from './timeline';

// The Web UI's routes (SPEC §7): static pages under api/ui/ that read the JSON API and its build
// events from the browser, plus what needs the server: `/builds/{name}?live` (live-page.ts)
// a build's timeline, read from its workflow history (timeline.ts), and the end of its init log.

const ASSETS = path.join(__dirname, 'ui');

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
    if (!BUILD_NAME_PATTERN.test(name)) throw new HttpError(400, `${name} is not a build name`);
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
    const timeline = await bounded(() => readTimeline(client, buildWorkflowId(name)));
    response.set('cache-control', 'no-store').json(timeline);
  });

  // What a failed build's page shows of why: the end of its init log, as plain text.
  ui.get('/builds/:name/init-log-tail.json', async (request, response) => {
    const name = validName(String(request.params.name));
    const log = await deps.readInitLog?.(name);
    if (log === undefined) throw new HttpError(404, 'No log found.');
    response.set('cache-control', 'no-store').json(initLogTail(log));
  });

  ui.get('/builds/:name', secured, async (request, response) => {
    const name = String(request.params.name);
    if (!BUILD_NAME_PATTERN.test(name)) {
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
    await serveLivePage(deps, name, response, { byPerson: isPersonOpening(request) });
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
