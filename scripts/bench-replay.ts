import { readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { workflowsPath } from '../worker/bundle';
import { RELEASED_HISTORIES } from '../worker/self-check';

// `npm run bench:replay`: what a build the worker no longer holds costs the worker's workflow
// thread before it can take a command, a replay of its run's history, for a run holding a whole
// life (release v3's evicted build: deployed, initialized, started, stopped, evicted) and for a
// run holding its first workflow task only (what a build that continued as new at rest holds,
// its patch marker and upsert aside). Each history is replayed BENCH_REPLAYS and then three times
// as many times (`Worker.runReplayHistories`, one bundle per call); the difference, per extra
// replay, is the replay's own cost, the bundle's excluded.

const REPLAYS = Number(process.env.BENCH_REPLAYS ?? 100);
const FIXTURE = path.join(RELEASED_HISTORIES, 'v3', 'build-evicted.json');
/** Started, workflow task scheduled, started, completed. */
const FIRST_TASK_EVENTS = 4;

async function replayMs(raw: { events: unknown[] }, times: number): Promise<number> {
  const history = historyFromJSON(raw);
  const histories = async function* () {
    for (let i = 0; i < times; i++) yield { workflowId: `replay-${i}`, history };
  };
  const start = process.hrtime.bigint();
  for await (const result of Worker.runReplayHistories({ workflowsPath }, histories())) {
    if (result.error) throw result.error;
  }
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function main(): Promise<void> {
  const life = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { events: unknown[] };
  const firstTask = { ...life, events: life.events.slice(0, FIRST_TASK_EVENTS) };
  await replayMs(firstTask, 10); // warm-up: module loading, the first bundle
  console.log('| history | events | ms per replay |\n| --- | --- | --- |');
  for (const [name, raw] of [
    ['a whole life (v3 build-evicted.json)', life],
    ['a run at rest (its first workflow task)', firstTask],
  ] as const) {
    const once = await replayMs(raw, REPLAYS);
    const thrice = await replayMs(raw, REPLAYS * 3);
    console.log(`| ${name} | ${raw.events.length} | ${((thrice - once) / (REPLAYS * 2)).toFixed(1)} |`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
