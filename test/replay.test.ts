import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { expect, it } from 'vitest';
import { releaseHistories, releases, RELEASED_HISTORIES } from '../worker/self-check';
import { replayOnTodaysCode } from './helpers';

// Histories recorded by every release of the build workflow (test/fixtures/histories/<version>/,
// never re-recorded) must replay on today's code: a change that would break running builds
// (non-determinism) fails here, not in production. README "Upgrading" says how to keep it so.

// Every folder's, not only the releases listed: a folder recorded but not declared replays too.
const histories = readdirSync(RELEASED_HISTORIES, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .flatMap((version) => releaseHistories(version.name))
  .map((file) => path.relative(RELEASED_HISTORIES, file));

it('has recorded histories of every release to replay', () => {
  for (const { version } of releases()) {
    expect(
      histories.filter((file) => file.startsWith(`${version}${path.sep}`)).length,
      version,
    ).toBeGreaterThan(0);
  }
});

it.each(histories)('replays %s without non-determinism', async (file) => {
  const history = historyFromJSON(JSON.parse(readFileSync(path.join(RELEASED_HISTORIES, file), 'utf8')));
  await replayOnTodaysCode(history);
});
