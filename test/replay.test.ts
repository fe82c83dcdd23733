import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { expect, it } from 'vitest';
import { releases, RELEASED_HISTORIES } from '../worker/self-check';
import { replayOnTodaysCode } from './helpers';

// Histories recorded by every release of the build workflow (test/fixtures/histories/<version>/,
// never re-recorded) must replay on today's code: a change that would break running builds
// (non-determinism) fails here, not in production. README "Upgrading" says how to keep it so.

const histories = readdirSync(RELEASED_HISTORIES, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .flatMap((version) =>
    readdirSync(path.join(RELEASED_HISTORIES, version.name))
      .filter((file) => file.endsWith('.json'))
      .map((file) => path.join(version.name, file)),
  );

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
