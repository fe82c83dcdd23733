import type { Request } from 'express';
import { createIsbotFromList, list } from 'isbot';

// Wake on visit starts a stopped build for a person, not for whatever fetches its address:
// crawlers follow the "View deployment" links of public pull requests, chat apps unfurl links
// pasted in a channel, and a tab left open on a stopped build keeps calling it (Odoo's bus
// reconnects all night). Each would start the build again after every idle stop, and a crawl
// of OCA's 7,000 deployed builds would churn its 150 started ones through eviction.

/**
 * isbot's list of crawlers, link unfurlers, monitors and HTTP libraries, less headless
 * browsers: people's test automation against a preview may wake it.
 */
const isAutomated = createIsbotFromList(list.filter((pattern) => pattern !== 'headless'));

/**
 * Whether `request` is a person opening the address in a browser: a GET the browser made as a
 * navigation (`Sec-Fetch-Mode: navigate`, which every current browser sends; an HTML `Accept`
 * from older ones), from a user agent that no crawler, unfurler, monitor or library claims,
 * and not a prefetch (`Sec-Purpose`, `Purpose`: browsers fetch some pages before anyone opens
 * them). ingress-nginx hands its error backend the client's method and headers, so this holds
 * on a build's host too.
 */
export function isPersonOpening(request: Request): boolean {
  if (request.method !== 'GET') return false;
  if (/prefetch|prerender/i.test(request.get('sec-purpose') ?? request.get('purpose') ?? '')) return false;
  const mode = request.get('sec-fetch-mode');
  const navigation =
    mode === undefined ? (request.get('accept') ?? '').includes('text/html') : mode === 'navigate';
  const agent = request.get('user-agent') ?? '';
  return navigation && agent !== '' && !isAutomated(agent);
}

/** Counts the openings of a stopped build's page, by a person (which start it) or not. */
export type StoppedOpeningObserver = (by: 'person' | 'other') => void;

/** A stopped build's hosts are for people: crawlers that ask are told to keep away. */
export const BUILD_HOST_ROBOTS_TXT = 'User-agent: *\nDisallow: /\n';
