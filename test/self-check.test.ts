import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { workflowsPath } from '../worker/bundle';
import {
  checkWorkflowCode,
  releaseHistories,
  releases,
  RELEASED_HISTORIES,
  WorkflowCodeError,
} from '../worker/self-check';
import { bundleQuietly } from './helpers';

// A worker replays the latest release's recorded histories on the workflow code it is about to
// run, and refuses to start on code that cannot run them (worker/self-check.ts).

let todays: { code: string };
const latest = releases().at(-1)!;
const scratch = mkdtempSync(path.join(os.tmpdir(), 'runboat-self-check-'));

beforeAll(async () => {
  todays = await bundleQuietly(workflowsPath);
}, 60_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

it("passes today's workflow code, replaying every history of the latest release", async () => {
  expect(await checkWorkflowCode(todays)).toEqual({
    release: latest.version,
    histories: releaseHistories(latest.version).length,
  });
  expect(releaseHistories(latest.version).length).toBeGreaterThan(0);
});

it('refuses code that takes a running build another way, naming the release and the history', async () => {
  // Another buildWorkflow under the same name: it continues as new where the release scheduled its deploy.
  const other = await bundleQuietly(path.join(__dirname, 'fixtures', 'workflows', 'continued-runs.ts'));
  const error = await checkWorkflowCode(other).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(WorkflowCodeError);
  expect((error as Error).message).toMatch(
    new RegExp(
      `cannot run release ${latest.version}'s builds: replaying its recorded history build-evicted failed: .*[Nn]ondeterminism`,
    ),
  );
}, 60_000);

it('refuses a bundle that does not load', async () => {
  const broken = { code: `throw new Error('a broken image');\n${todays.code}` };
  const error = await checkWorkflowCode(broken).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(WorkflowCodeError);
  expect((error as Error).message).toMatch(/cannot run release v\d+'s builds.*a broken image/s);
}, 60_000);

it('has nothing to check against in a tree without recorded histories', async () => {
  expect(await checkWorkflowCode(todays, path.join(scratch, 'none'))).toBeUndefined();
});

it('checks against the newest release listed, not the others', async () => {
  // A copy of the histories where the latest release recorded one history only.
  const dir = path.join(scratch, 'histories');
  cpSync(RELEASED_HISTORIES, dir, { recursive: true });
  for (const file of releaseHistories(latest.version, dir).slice(1)) rmSync(file);
  expect(await checkWorkflowCode(todays, dir)).toEqual({ release: latest.version, histories: 1 });
}, 60_000);

it('names a file of the recorded histories it cannot read', async () => {
  const dir = path.join(scratch, 'damaged');
  cpSync(RELEASED_HISTORIES, dir, { recursive: true });
  for (const damaged of [releaseHistories(latest.version, dir)[0], path.join(dir, 'releases.json')]) {
    writeFileSync(damaged, '{"events": [');
    const error = await checkWorkflowCode(todays, dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowCodeError);
    expect((error as Error).message).toContain(`cannot read ${damaged} of the recorded histories: `);
  }
});
