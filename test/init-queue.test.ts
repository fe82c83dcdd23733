import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startBuild } from '../api/build-client';
import type { InitQueuePlace } from '../api/init-queue';
import type { BuildRef } from '../common/types';
import { useStack } from './api-server';
import { dropScratchScreenshots, launchChromium, SCREEN, SCREENSHOTS } from './browser';
import { SHA, testConfig, untilBuildStatus, waitFor } from './helpers';

// Where a build waiting for an init slot is in line: `GET /api/v1/builds/{name}/init-queue`, and
// its build page and live page, which say it while it waits. One slot here, so that builds queue.

const config = testConfig({ RUNBOAT_MAX_INITIALIZING: '1', RUNBOAT_NO_CLEANUP_JOB: 'true' });
const stack = useStack(config);
let browser: Browser;
const builds: BuildRef[] = [];

const placeOf = async (build: BuildRef) => {
  const response = await stack.api.request('GET', `/api/v1/builds/${build.name}/init-queue`);
  expect(response.status).toBe(200);
  return (await response.json()) as InitQueuePlace;
};
/** Waits until the API tells `build`'s place as `expected` (its read of the line is up to 2 s old). */
const untilPlace = (build: BuildRef, expected: InitQueuePlace) =>
  waitFor(`${build.name} at ${JSON.stringify(expected)}`, async () => {
    const place = await placeOf(build);
    return JSON.stringify(place) === JSON.stringify(expected) && place;
  });

beforeAll(async () => {
  // One after the other: the line is in the order the builds asked for a slot.
  for (const sha of ['a', 'b', 'c']) {
    const build = await startBuild(stack.temporal.client, config, {
      repo: 'oca/queue',
      target_branch: '16.0',
      pr: null,
      git_commit: SHA(sha),
    });
    builds.push(build);
    await waitFor(`${build.name} in line or holding the slot`, async () => {
      const { waiting, initializing } = await placeOf(build);
      return waiting + initializing === builds.length;
    });
  }
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  dropScratchScreenshots();
});

it("tells each build's place in line, the next to get a slot first", async () => {
  const [first, second, third] = builds;
  await untilPlace(third, { place: 2, waiting: 2, initializing: 1, max_initializing: 1 });
  expect(await placeOf(second)).toEqual({ place: 1, waiting: 2, initializing: 1, max_initializing: 1 });
  // Holding the slot: not in line.
  expect(await placeOf(first)).toEqual({ place: null, waiting: 2, initializing: 1, max_initializing: 1 });
  const bad = await stack.api.request('GET', '/api/v1/builds/not_a_build/init-queue');
  expect(bad.status).toBe(400);
});

it('says the place on the board, the build page and the live page while the build waits, and moves it up', async () => {
  const [first, second, third] = builds;
  const context = await browser.newContext(SCREEN);
  const [page, live, board] = [await context.newPage(), await context.newPage(), await context.newPage()];
  try {
    await board.goto(`${stack.api.url}/builds?repo=oca/queue`);
    const queueOn = (build: BuildRef) => board.locator(`article.card[data-build="${build.name}"] .queue`);
    await queueOn(third)
      .filter({ hasText: 'Waiting for an init slot: 2nd in line, 1 of 1 slots busy.' })
      .waitFor();
    await queueOn(second).filter({ hasText: '1st in line' }).waitFor();
    expect(await queueOn(first).isHidden()).toBe(true);
    await page.goto(`${stack.api.url}/builds/${third.name}`);
    const line = page.locator(`article.card[data-build="${third.name}"] .queue`);
    await line.filter({ hasText: 'Waiting for an init slot: 2nd in line, 1 of 1 slots busy.' }).waitFor();
    // The page's own module, as its scripts import it (a string: vitest rewrites import() in functions).
    const ordinals = await page.evaluate(
      "import('/ui/common.js').then(({ ordinal }) => [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112].map(ordinal))",
    );
    expect(ordinals).toEqual('1st 2nd 3rd 4th 11th 12th 13th 21st 22nd 23rd 101st 111th 112th'.split(' '));
    await live.goto(`${stack.api.url}/builds/${third.name}?live`);
    const message = live.locator('#live-message');
    await message.filter({ hasText: 'Waiting for an init slot: 2nd in line' }).waitFor();
    await live.screenshot({ path: path.join(SCREENSHOTS, 'live-queued.png'), fullPage: true });

    // The first build's init ends: the second takes the slot, the third is next.
    await stack.cluster.finishJob(first.name, 'initialize', true);
    await line.filter({ hasText: '1st in line' }).waitFor();
    await message.filter({ hasText: '1st in line' }).waitFor();

    // The third takes the slot: no place any more, the pages say it initializes.
    await stack.cluster.finishJob(second.name, 'initialize', true);
    await untilBuildStatus(stack.temporal.client, third.name, 'initializing');
    await untilPlace(third, { place: null, waiting: 0, initializing: 1, max_initializing: 1 });
    await page
      .locator(`article.card[data-build="${third.name}"] .queue[hidden]`)
      .waitFor({ state: 'attached' });
    await board
      .locator(`article.card[data-build="${third.name}"] .queue[hidden]`)
      .waitFor({ state: 'attached' });
    await message.filter({ hasText: 'Initializing the build.' }).waitFor();
  } finally {
    await context.close();
  }
});
