import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContextOptions } from 'playwright-core';

// The browser tests' chromium, and where they put the README's screenshots.

/** Debian's chromium, headless, quiet (no updates, sync or QUIC of its own), driven by playwright-core. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-quic',
      '--no-first-run',
      '--disable-sync',
    ],
  });
}

/** The pages as the screenshots show them: a laptop's screen, light, in UTC. */
export const SCREEN: BrowserContextOptions = {
  viewport: { width: 1280, height: 800 },
  locale: 'en-GB',
  timezoneId: 'UTC',
  colorScheme: 'light',
};

/**
 * The README's screenshots, written again only on request (UPDATE_SCREENSHOTS=1): a test run
 * changes no tracked file. Otherwise the pages are still captured, to a scratch folder.
 */
export const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS
  ? path.resolve(__dirname, '..', 'docs', 'screenshots')
  : mkdtempSync(path.join(os.tmpdir(), 'runboat-screenshots-'));

/** Removes the scratch folder of a run that was not asked to update the screenshots. */
export function dropScratchScreenshots(): void {
  if (!process.env.UPDATE_SCREENSHOTS) rmSync(SCREENSHOTS, { recursive: true, force: true });
}
