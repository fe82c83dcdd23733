import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { expect, it } from 'vitest';
import { replayOnTodaysCode } from './helpers';

// Histories recorded by every release of the build workflow (test/fixtures/histories/<version>/,
// never re-recorded) must replay on today's code: a change that would break running builds
// (non-determinism) fails here, not in production. README "Upgrading" says how to keep it so.

export const HISTORIES = path.join(__dirname, 'fixtures', 'histories');
const histories = readdirSync(HISTORIES, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .flatMap((version) =>
    readdirSync(path.join(HISTORIES, version.name))
      .filter((file) => file.endsWith('.json'))
      .map((file) => path.join(version.name, file)),
  );

it('has recorded histories of every release to replay', () => {
  const releases = JSON.parse(readFileSync(path.join(HISTORIES, 'releases.json'), 'utf8')) as Array<{
    version: string;
  }>;
  for (const { version } of releases) {
    expect(
      histories.filter((file) => file.startsWith(`${version}${path.sep}`)).length,
      version,
    ).toBeGreaterThan(0);
  }
});

it.each(histories)('replays %s without non-determinism', async (file) => {
  const history = historyFromJSON(JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8')));
  await replayOnTodaysCode(history);
});
