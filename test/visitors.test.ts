import type { Request } from 'express';
import { expect, it } from 'vitest';
import { isPersonOpening } from '../api/visitors';

// Who may wake a stopped build: a person opening its address, not what fetches it unattended.

const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';
const NAVIGATION = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8', 'sec-fetch-mode': 'navigate' };

function request(method: string, headers: Record<string, string>): Request {
  return { method, get: (name: string) => headers[name.toLowerCase()] } as unknown as Request;
}

it.each([
  ['a browser navigating', 'GET', { ...NAVIGATION, 'user-agent': FIREFOX }, true],
  [
    'a phone whose model name holds "bot"',
    'GET',
    {
      ...NAVIGATION,
      'user-agent':
        'Mozilla/5.0 (Linux; Android 9; CUBOT X20) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36',
    },
    true,
  ],
  [
    'a browser too old for Sec-Fetch, asking for HTML',
    'GET',
    { accept: 'text/html,*/*', 'user-agent': 'Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Safari/605.1.15' },
    true,
  ],
  [
    'a headless browser (test automation)',
    'GET',
    { ...NAVIGATION, 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36' },
    true,
  ],
  ['a prefetch', 'GET', { ...NAVIGATION, 'sec-purpose': 'prefetch', 'user-agent': FIREFOX }, false],
  [
    'a prefetch, as older browsers say it',
    'GET',
    { ...NAVIGATION, purpose: 'prefetch', 'user-agent': FIREFOX },
    false,
  ],
  ['a HEAD from a browser', 'HEAD', { ...NAVIGATION, 'user-agent': FIREFOX }, false],
  ["a page's own fetch", 'GET', { 'sec-fetch-mode': 'cors', accept: '*/*', 'user-agent': FIREFOX }, false],
  ["an open tab's websocket", 'GET', { 'sec-fetch-mode': 'websocket', 'user-agent': FIREFOX }, false],
  ["an open tab's call", 'POST', { 'sec-fetch-mode': 'cors', 'user-agent': FIREFOX }, false],
  [
    'a crawler asking for HTML',
    'GET',
    {
      accept: 'text/html',
      'user-agent': 'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
    },
    false,
  ],
  [
    'a link unfurler',
    'GET',
    {
      accept: 'text/html',
      'user-agent': 'Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)',
    },
    false,
  ],
  ['an HTTP library', 'GET', { accept: 'text/html', 'user-agent': 'python-requests/2.32.3' }, false],
  ['no user agent', 'GET', { ...NAVIGATION }, false],
  ['no sign of a navigation', 'GET', { 'user-agent': FIREFOX }, false],
])('%s: %s', (_who, method, headers, person) => {
  expect(isPersonOpening(request(method, headers))).toBe(person);
});
