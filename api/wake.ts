import type { RequestHandler } from 'express';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import { serveLivePage, type UiDependencies } from './live-page';
import type { BuildIndex } from '../common/build-index';
import type { Visits } from './visits';
import { BUILD_HOST_ROBOTS_TXT, isPersonOpening } from './visitors';

// Wake on visit (issue 11 §1). The default kubefiles send a build's hosts here while the build
// has no ready pod (ingress-nginx: `default-backend` + `custom-http-errors: "503"`), so this
// answers requests whose Host is `<slug>.<build domain>` or `<slug>.mail.<build domain>`: a
// stopped build is started and the visitor waits on the live page, which reloads the address
// they asked for once the build is up. It never proxies the build's traffic. Only a person's
// visit starts a build (visitors.ts); crawlers are asked to keep away (robots.txt).
//
// ingress-nginx hands its error backend `/` with the address asked for in X-Original-URI (and
// the client's method and headers, the original Host among them). The live page's own requests
// (its script and style under /ui/, the build's events and start under /api/v1/) come the same
// way, so they are routed as if they had been made to this service.

const OWN_PATHS = /^\/(ui|api\/v1)\//;

/** The live page's, with the visits it counts and the index it finds a host's build in. */
export interface WakeDependencies extends UiDependencies {
  visits: Visits;
  /**
   * Where a host's build is looked up: every request of a page to a stopped build comes here,
   * and so do visits to hosts no build has; a visibility query for each would take the
   * namespace's visibility rate from everyone (see build-index.ts).
   */
  index: BuildIndex;
}

/** The slug in `host` when it is one of a build's hosts, else undefined. */
export function slugOfHost(config: Config, host: string): string | undefined {
  const hostname = host.toLowerCase().replace(/:\d+$/, '');
  if (hostname === new URL(config.baseUrl).hostname) return undefined;
  const domain = config.buildDomain.toLowerCase();
  const match = /^([a-z0-9-]+)(\.mail)?\.(.+)$/.exec(hostname);
  return match && match[3] === domain ? match[1] : undefined;
}

export function wakeHandler(deps: WakeDependencies): RequestHandler {
  const { config, index } = deps;
  return async (request, response, next) => {
    const slug = slugOfHost(config, request.get('host') ?? '');
    if (slug === undefined) return next();
    const originalUri = request.get('x-original-uri');
    const path = originalUri ?? request.path;
    if (OWN_PATHS.test(path)) {
      if (originalUri) request.url = originalUri;
      return next();
    }
    if (path.split('?')[0] === '/robots.txt') {
      response.set('cache-control', 'no-store').type('text/plain').send(BUILD_HOST_ROBOTS_TXT);
      return;
    }
    let name: string | undefined;
    try {
      name = (await deps.bounded(() => index.list({ slug })))[0]?.name;
    } catch (error) {
      logger.warn({ err: error, slug }, 'wake: build lookup failed');
      response.status(503).type('text/plain').send('runboat cannot reach its backend; try again shortly');
      return;
    }
    if (!name) {
      response
        .status(404)
        .set('cache-control', 'no-store')
        .type('text/plain')
        .send(`No build is deployed at ${request.get('host')}.`);
      return;
    }
    await serveLivePage(deps, name, response, { wake: true, byPerson: isPersonOpening(request) });
  };
}
