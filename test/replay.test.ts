import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { expect, it } from 'vitest';

// Histories recorded from earlier versions of the build workflow must still replay: a change
// that would break running builds (non-determinism) fails here, not in production.

const dir = path.join(__dirname, 'fixtures', 'histories');
const histories = readdirSync(dir).filter((file) => file.endsWith('.json'));

it('has recorded histories to replay', () => {
  expect(histories.length).toBeGreaterThan(0);
});

it.each(histories)('replays %s without non-determinism', async (file) => {
  const history = historyFromJSON(JSON.parse(readFileSync(path.join(dir, file), 'utf8')));
  await Worker.runReplayHistory({ workflowsPath: path.resolve(__dirname, '..', 'workflows') }, history);
});
