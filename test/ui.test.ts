import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import { escapeHtml } from '../api/pages';
import type { BuildJson } from '../api/views';
import { buildRef } from '../common/build';
import type { BuildRef, BuildStatus, CommitInfo } from '../common/types';
import { payloads, pollPastTheDeadline, startStack, type TestStack } from './api-server';
import { dropScratchScreenshots, launchChromium, SCREEN, SCREENSHOTS } from './browser';
import { SHA, TestCluster, testConfig, waitFor, untilBuildStatus } from './helpers';

// The Web UI in Debian's chromium, driven by playwright-core, against the real API, worker,
// Temporal and kube-apiserver. The test plays the Job and Deployment controllers.

const TEMPORAL_UI = 'https://stack.temporal.example.org';
/** Shorter than the API's default, so that staying live past it takes seconds. */
const BACKEND_DEADLINE_MS = 3_000;

let config: ReturnType<typeof testConfig>;
let cluster: TestCluster;
let stack: TestStack;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Every URL the browser asked for: the UI must load nothing from elsewhere (no CDN). */
const requested: string[] = [];
const builds: Record<string, BuildRef> = {};

const commit = (branch: string, pr: number | null, sha: string, repo = 'oca/website'): CommitInfo => ({
  repo,
  target_branch: branch,
  pr,
  git_commit: SHA(sha),
});
const reach = (build: BuildRef, status: BuildStatus) =>
  untilBuildStatus(stack.temporal.client, build.name, status);
const listed = async (repo: string) =>
  (await (await stack.api.request('GET', `/api/v1/builds?repo=${repo}`)).json()) as BuildJson[];
const card = (name: string) => page.locator(`article.card[data-build="${name}"]`);
const cardStatus = (name: string, status: string) =>
  page.locator(`article.card[data-build="${name}"][data-status="${status}"]`);

beforeAll(async () => {
  config = testConfig({
    RUNBOAT_GITHUB_WEBHOOK_SECRET: 'webhook-secret',
    RUNBOAT_TEMPORAL_UI_URL: TEMPORAL_UI,
    RUNBOAT_BASE_URL: 'https://runboat.example.org',
    RUNBOAT_NO_CLEANUP_JOB: 'true',
  });
  cluster = new TestCluster(config.buildNamespace);
  stack = await startStack(config, cluster, { backendTimeoutMs: BACKEND_DEADLINE_MS });

  builds.branch = await startBuild(stack.temporal.client, config, commit('16.0', null, 'a'));
  builds.pr = await startBuild(stack.temporal.client, config, commit('16.0', 12, 'b'));
  await cluster.finishJob(builds.branch.name, 'initialize', true);
  await cluster.finishJob(builds.pr.name, 'initialize', false);
  builds.older = await startBuild(stack.temporal.client, config, commit('17.0', null, 'c'));
  await cluster.finishJob(builds.older.name, 'initialize', true);
  await Promise.all([
    reach(builds.branch, 'started'),
    reach(builds.pr, 'failed'),
    reach(builds.older, 'started'),
  ]);
  // The log the worker keeps once an init failed (the test cluster runs no pods).
  const lines = Array.from({ length: 100 }, (_, at) => `installing module ${at}`);
  await cluster.keepInitLog(
    builds.pr.name,
    `${lines.join('\n')}\n\x1b[31mERROR: <img src=x onerror=alert(1)> column does not exist\x1b[0m\n`,
  );
  await stack.api.request('POST', `/api/v1/builds/${builds.older.name}/stop`);
  await reach(builds.older, 'stopped');
  await waitFor('three builds listed', async () => (await listed('oca/website')).length === 3);

  browser = await launchChromium();
  context = await browser.newContext(SCREEN);
  context.on('request', (request) => requested.push(request.url()));
  // Build hosts do not resolve here: the "instance" answers from the test.
  await context.route('http://*.runboat.test/**', (route) =>
    route.fulfill({ contentType: 'text/html', body: '<title>odoo</title>odoo' }),
  );
  page = await context.newPage();
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
  dropScratchScreenshots();
});

describe('home', () => {
  it('lists the repos, linking to their boards, and shows the status counts with their limits', async () => {
    await page.goto(`${stack.api.url}/`);
    const repo = page.locator('a.repo-link', { hasText: 'oca/website' });
    await repo.waitFor();
    expect(await repo.getAttribute('href')).toBe('/builds?repo=oca%2Fwebsite');
    const started = page.locator('.stat-started');
    await started.waitFor();
    expect((await started.innerText()).replace(/\s+/g, ' ')).toContain('1 / 6');
    expect(await page.locator('.stat-failed .stat-value').innerText()).toBe('1');
    expect(await page.locator('meter').count()).toBe(3);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'home.png'), fullPage: true });
  });

  it('shows a repo when its first build comes and drops it when its last goes, live', async () => {
    // The page follows the changes only (no first builds: with no filter, every build).
    await page.goto(`${stack.api.url}/`);
    await page.locator('#connection[data-state="live"]').waitFor();
    const repo = page.locator('a.repo-link', { hasText: 'oca/newcomer' });
    expect(await repo.count()).toBe(0);
    const build = await startBuild(stack.temporal.client, config, commit('16.0', null, 'e', 'oca/newcomer'));
    await repo.waitFor();
    expect(await page.locator('a.repo-link').allInnerTexts()).toEqual(['oca/newcomer', 'oca/website']);
    await sendBuildCommand(stack.temporal.client, build.name, 'undeploy');
    await repo.waitFor({ state: 'detached' });
    expect(await page.locator('a.repo-link').allInnerTexts()).toEqual(['oca/website']);
  });
});

describe('builds board', () => {
  it('shows a build within 2 s of its webhook, in a new row on top', async () => {
    await page.goto(`${stack.api.url}/builds?repo=oca/website`);
    await page.locator('#connection[data-state="live"]').waitFor();
    await card(builds.branch.name).waitFor();
    const name = buildRef(commit('15.0', null, 'd')).name;
    const response = await stack.api.webhook('push', payloads.push('OCA/website', '15.0', SHA('d')));
    expect(response.status).toBe(200);
    builds.pushed = buildRef(commit('15.0', null, 'd'));
    await card(name).waitFor({ timeout: 2_000 });
    // Newest first, and each branch or PR once: the pushed branch is the first row.
    const rows = await page.locator('section.row:not([hidden]) h2').allInnerTexts();
    expect(rows).toEqual(['15.0', '17.0', 'PR #12 → 16.0', '16.0']);
    expect(await card(name).locator('.commit').innerText()).toBe(SHA('d').slice(0, 8));
    expect(await card(name).locator('.commit').getAttribute('href')).toBe(
      `https://github.com/oca/website/commit/${SHA('d')}`,
    );
  });

  it('enables only the actions that apply', async () => {
    const enabled = async (name: string) => ({
      start: await card(name).locator('button[data-action="start"]').isEnabled(),
      stop: await card(name).locator('button[data-action="stop"]').isEnabled(),
      reset: await card(name).locator('button[data-action="reset"]').isEnabled(),
    });
    await cardStatus(builds.branch.name, 'started').waitFor();
    expect(await enabled(builds.branch.name)).toEqual({ start: false, stop: true, reset: true });
    expect(await enabled(builds.pr.name)).toEqual({ start: true, stop: false, reset: true });
    expect(await enabled(builds.older.name)).toEqual({ start: true, stop: false, reset: true });
  });

  it('clicking stop shows the request pending, then the card stopped', async () => {
    const stop = card(builds.branch.name).locator('button[data-action="stop"]');
    await stop.click();
    // Pending (or already stopping): no second click possible.
    expect(await stop.isDisabled()).toBe(true);
    await cardStatus(builds.branch.name, 'stopped').waitFor();
    expect(await card(builds.branch.name).locator('.badge').innerText()).toMatch(/stopped/i);
    await card(builds.branch.name).locator('button[data-action="start"]:not([disabled])').waitFor();
    await reach(builds.branch, 'stopped');
  });

  it('filters by branch, PR number, commit and repo with the search box', async () => {
    const visibleCards = async () => {
      const cards = page.locator('li:not([hidden]) > article.card');
      const names = await Promise.all((await cards.all()).map((c) => c.getAttribute('data-build')));
      return names.sort();
    };
    const search = page.getByLabel('Filter builds');
    await search.fill('#12');
    expect(await visibleCards()).toEqual([builds.pr.name]);
    expect(await page.locator('section.row:not([hidden])').count()).toBe(1);
    await search.fill('17.0');
    expect(await visibleCards()).toEqual([builds.older.name]);
    await search.fill(SHA('d').slice(0, 7));
    expect(await visibleCards()).toEqual([builds.pushed.name]);
    expect(page.url()).toContain(`q=${SHA('d').slice(0, 7)}`);
    await search.fill('nothing-like-this');
    expect(await visibleCards()).toEqual([]);
    expect(await page.locator('#board-empty').isVisible()).toBe(true);
    await search.fill('oca/website');
    expect(await visibleCards()).toHaveLength(4);
    await search.fill('');
    expect(await page.locator('#search-count').innerText()).toBe('4 builds');
    await search.blur();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'board.png'), fullPage: true });
  });

  it('fits a phone screen', async () => {
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 375, height: 740 });
    await phone.goto(`${stack.api.url}/builds?repo=oca/website`);
    await phone.locator(`article.card[data-build="${builds.branch.name}"]`).waitFor();
    expect(await phone.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await phone.screenshot({ path: path.join(SCREENSHOTS, 'board-phone.png'), fullPage: true });
    await phone.close();
  });

  it('reconnects when the event stream fails, and catches up', async () => {
    const again = await context.newPage();
    let refused = 0;
    await again.route('**/api/v1/build-events?*', async (route) => {
      if (refused++ < 2) await route.fulfill({ status: 503, body: 'down' });
      else await route.continue();
    });
    await again.goto(`${stack.api.url}/builds?repo=oca/website`);
    await again.locator('#connection[data-state="live"]').waitFor();
    expect(refused).toBeGreaterThanOrEqual(3);
    await again.locator(`article.card[data-build="${builds.pr.name}"]`).waitFor();
    await again.close();
  });
});

describe('a board left open', () => {
  it('stays live long past the backend deadline: a start and a stop elsewhere both show', async () => {
    const board = await context.newPage();
    const boardCard = (status: string) =>
      board.locator(`article.card[data-build="${builds.older.name}"][data-status="${status}"]`);
    try {
      await board.goto(`${stack.api.url}/builds?repo=oca/website`);
      await board.locator('#connection[data-state="live"]').waitFor();
      await boardCard('stopped').waitFor();
      await pollPastTheDeadline(stack.api, BACKEND_DEADLINE_MS);

      await stack.api.request('POST', `/api/v1/builds/${builds.older.name}/start`);
      await boardCard('started').waitFor();
      await pollPastTheDeadline(stack.api, BACKEND_DEADLINE_MS);
      await stack.api.request('POST', `/api/v1/builds/${builds.older.name}/stop`);
      await boardCard('stopped').waitFor();
      await reach(builds.older, 'stopped');
    } finally {
      await board.close();
    }
  });
});

describe('?live', () => {
  it('starts a stopped build, waits on a live page, and redirects once it is started', async () => {
    const build = builds.branch;
    const state = await getBuildState(stack.temporal.client, build.name);
    expect(state.status).toBe('stopped');
    const deployLink = `http://${build.slug}.runboat.test/`;
    await page.goto(`${stack.api.url}/builds/${build.name}?live`);
    await page.waitForURL(deployLink);
    expect(await page.content()).toContain('odoo');
    expect((await getBuildState(stack.temporal.client, build.name)).status).toBe('started');
  });

  it('answers a redirect at once when the build is started', async () => {
    const response = await fetch(`${stack.api.url}/builds/${builds.branch.name}?live`, {
      redirect: 'manual',
    });
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe(`http://${builds.branch.slug}.runboat.test`);
  });

  it('says a failed build failed, with the end of its init log', async () => {
    await page.goto(`${stack.api.url}/builds/${builds.pr.name}?live`);
    expect(await page.locator('#live-message').innerText()).toMatch(/failed to initialize/);
    const log = page.getByRole('link', { name: 'Read the init log' });
    expect(await log.getAttribute('href')).toBe(`/api/v1/builds/${builds.pr.name}/init-log`);
    const tail = (await page.locator('#live-log').textContent())?.split('\n');
    expect(tail).toHaveLength(60);
    expect(tail?.at(-1)).toBe('ERROR: <img src=x onerror=alert(1)> column does not exist');
    expect(await page.locator('section.live img').count()).toBe(0);
    // Not read for what is not a person's visit (on a build's host, every request comes there).
    const fetched = await (await fetch(`${stack.api.url}/builds/${builds.pr.name}?live`)).text();
    expect(fetched).toMatch(/failed to initialize[\s\S]*Read the init log/);
    expect(fetched).not.toContain('id="live-log"');
  });

  it('shows why a build it waits on failed, once it fails', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('16.0', null, 'd', 'oca/live-fail'));
    await page.goto(`${stack.api.url}/builds/${build.name}?live`);
    await page.locator('#live-spinner').waitFor();
    await cluster.keepInitLog(
      build.name,
      'installing addons\nERROR: module website_sale: field does not exist\n',
    );
    await cluster.finishJob(build.name, 'initialize', false);
    // Served again once the build failed, with the end of its log.
    await page.locator('#live-log', { hasText: 'field does not exist' }).waitFor();
    expect(await page.locator('#live-message').innerText()).toMatch(/failed to initialize/);
  });

  it('answers 404 for an unknown build', async () => {
    const response = await fetch(`${stack.api.url}/builds/no-such-build?live`);
    expect(response.status).toBe(404);
    expect(await response.text()).toContain('Build not found');
  });

  it("leaves a stopped build stopped for a crawler's visit, and starts it at a click on its page", async () => {
    const build = builds.older;
    const crawler = await browser.newContext({
      userAgent: 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
    });
    try {
      await crawler.route('http://*.runboat.test/**', (route) =>
        route.fulfill({ contentType: 'text/html', body: '<title>odoo</title>odoo' }),
      );
      const visit = await crawler.newPage();
      const opened = await visit.goto(`${stack.api.url}/builds/${build.name}?live`);
      expect(opened?.headers()['x-robots-tag']).toBe('noindex, nofollow');
      const start = visit.getByRole('button', { name: 'Start the build' });
      await start.waitFor();
      expect(await visit.locator('#live-message').innerText()).toBe('This build is stopped.');
      await visit.screenshot({ path: path.join(SCREENSHOTS, 'live-stopped.png'), fullPage: true });
      // The page was answered without a start (the server sends one before it answers).
      expect((await getBuildState(stack.temporal.client, build.name)).status).toBe('stopped');
      await start.click();
      await visit.waitForURL(`http://${build.slug}.runboat.test/`);
      expect((await getBuildState(stack.temporal.client, build.name)).status).toBe('started');
    } finally {
      await crawler.close();
    }
  });
});

describe('build page', () => {
  it('links to the instance, mail catcher, logs, GitHub and the workflow in the Temporal Web UI', async () => {
    const build = builds.branch;
    await page.goto(`${stack.api.url}/builds/${build.name}`);
    const temporalLink = page.locator('#temporal-link');
    await temporalLink.waitFor();
    expect(await temporalLink.getAttribute('href')).toBe(
      `${TEMPORAL_UI}/namespaces/${config.temporalNamespace}/workflows/build-${build.name}`,
    );
    const href = (id: string) => page.locator(`#${id}`).getAttribute('href');
    await cardStatus(build.name, 'started').waitFor();
    expect(await href('live-link')).toBe(`http://${build.slug}.runboat.test`);
    expect(await href('mail-link')).toBe(`http://${build.slug}.mail.runboat.test`);
    expect(await href('init-log-link')).toBe(`/api/v1/builds/${build.name}/init-log`);
    expect(await href('log-link')).toBe(`/api/v1/builds/${build.name}/log`);
    expect(await href('commit-link')).toBe(`https://github.com/oca/website/commit/${SHA('a')}`);
    expect(await href('branch-link')).toBe('https://github.com/oca/website/tree/16.0');
  });

  it('shows a timeline of the transitions and commands from the workflow history', async () => {
    const timeline = page.locator('#timeline');
    await page.locator('#timeline li', { hasText: 'Stop requested' }).waitFor();
    const entries = (await timeline.locator('li .timeline-text').allInnerTexts()).reverse();
    const expected = [
      // Started with its search attributes: created initializing, waiting for a slot.
      /^Build created: Initializing — waiting for an initialization slot/,
      /^Initialization slot granted/,
      /^Initializing — initializing the database/,
      /^Started/,
      /^Stop requested/,
      /^Stopping/,
      /^Stopped/,
      /^Start requested/,
      /^Started/,
    ];
    let at = 0;
    for (const pattern of expected) {
      const found = entries.findIndex((text, index) => index >= at && pattern.test(text));
      expect(found, `${pattern} in ${JSON.stringify(entries)}`).toBeGreaterThanOrEqual(0);
      at = found + 1;
    }
    await page.screenshot({ path: path.join(SCREENSHOTS, 'build.png'), fullPage: true });
  });

  it('updates live when the build is acted on elsewhere', async () => {
    await stack.api.request('POST', `/api/v1/builds/${builds.branch.name}/stop`);
    await cardStatus(builds.branch.name, 'stopped').waitFor();
    expect(await page.locator('#build-status').innerText()).toMatch(/stopped/i);
  });

  it("shows the end of a failed init's log as plain text, and no such panel for a started build", async () => {
    const build = builds.pr;
    await page.goto(`${stack.api.url}/builds/${build.name}`);
    const log = page.locator('#init-failure-log');
    await log.waitFor();
    const text = await log.textContent();
    expect(text?.split('\n')).toHaveLength(60);
    expect(text?.startsWith('installing module 41\n')).toBe(true);
    expect(text?.endsWith('ERROR: <img src=x onerror=alert(1)> column does not exist')).toBe(true);
    expect(await page.locator('#init-failure img').count()).toBe(0);
    expect(await page.locator('#init-failure-note').innerText()).toMatch(
      /^The end of the initialization log/,
    );
    expect(await page.locator('#init-failure-note a').getAttribute('href')).toBe(
      `/api/v1/builds/${build.name}/init-log`,
    );
    await page.locator('#timeline[aria-busy="false"]').waitFor();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'build-failed.png'), fullPage: true });

    await page.goto(`${stack.api.url}/builds/${builds.branch.name}`);
    await card(builds.branch.name).waitFor();
    expect(await page.locator('#init-failure').isHidden()).toBe(true);
    const tail = (name: string) => stack.api.request('GET', `/builds/${name}/init-log-tail.json`);
    expect((await tail(builds.branch.name)).status).toBe(404);
    expect((await tail('Bad_Name')).status).toBe(400);
  });

  it('serves the timeline as JSON', async () => {
    const response = await stack.api.request('GET', `/builds/${builds.pr.name}/timeline.json`);
    expect(response.status).toBe(200);
    const timeline = (await response.json()) as { workflow_id: string; entries: Array<{ status?: string }> };
    expect(timeline.workflow_id).toBe(`build-${builds.pr.name}`);
    expect(timeline.entries.map((e) => e.status)).toContain('failed');
    expect((await stack.api.request('GET', '/builds/Bad_Name/timeline.json')).status).toBe(400);
  });
});

describe('safety', () => {
  it('loads nothing from outside the API, and sends a strict Content-Security-Policy', async () => {
    const outside = requested.filter(
      (url) => !url.startsWith(stack.api.url) && !url.startsWith('data:') && !url.includes('.runboat.test'),
    );
    expect(outside).toEqual([]);
    for (const path of ['/', '/builds', `/builds/${builds.pr.name}`, '/ui/common.js']) {
      const response = await stack.api.request('GET', path);
      expect(response.status, path).toBe(200);
      expect(response.headers.get('content-security-policy'), path).toContain("script-src 'self'");
    }
    expect((await stack.api.request('GET', '/ui/missing.js')).status).toBe(404);
  });

  it('escapes text for HTML', () => {
    expect(escapeHtml(`<img src=x onerror="alert('x')">&`)).toBe(
      '&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;',
    );
  });
});
