import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker, type WorkflowBundleOption } from '@temporalio/worker';

// A worker replays the recorded histories of the latest release on the workflow code it is about
// to run before it polls. Code that cannot run the builds of that release (a bundle that does not
// load, a change that takes their histories another way) would otherwise fail every workflow task
// of every build while the process looks healthy; stopped at start, it crash-loops the new image
// while the replicas of the old one, never replaced by a pod that is not ready, keep the builds
// going (deploy/worker.yaml).

/** Every release's recorded histories: test/fixtures/histories, and beside dist/ in the image. */
export const RELEASED_HISTORIES = path.resolve(__dirname, '..', 'test', 'fixtures', 'histories');

export interface Release {
  version: string;
  commit: string;
}

/** The releases whose histories are kept, oldest first (releases.json). */
export function releases(dir = RELEASED_HISTORIES): Release[] {
  return readJson(path.join(dir, 'releases.json')) as Release[];
}

/** The history files a release recorded (paths). */
export function releaseHistories(version: string, dir = RELEASED_HISTORIES): string[] {
  const folder = path.join(dir, version);
  return readdirSync(folder)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => path.join(folder, file));
}

export class WorkflowCodeError extends Error {}

/** A file of the recorded histories; one that cannot be read stops the check, named. */
function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new WorkflowCodeError(`cannot read ${file} of the recorded histories: ${(error as Error).message}`);
  }
}

export interface SelfCheck {
  release: string;
  histories: number;
}

/**
 * Replays the latest release's histories on `workflowBundle`; throws a WorkflowCodeError naming
 * the first that fails. Without recorded histories (a tree built without them) there is nothing
 * to check against: undefined.
 */
export async function checkWorkflowCode(
  workflowBundle: WorkflowBundleOption,
  dir = RELEASED_HISTORIES,
): Promise<SelfCheck | undefined> {
  if (!existsSync(path.join(dir, 'releases.json'))) return undefined;
  const latest = releases(dir).at(-1);
  if (!latest) return undefined;
  const files = releaseHistories(latest.version, dir);
  const histories = files.map((file) => ({
    workflowId: path.basename(file, '.json'),
    history: historyFromJSON(readJson(file)),
  }));
  let failure: string | undefined;
  try {
    const results = Worker.runReplayHistories({ workflowBundle, replayName: 'self-check' }, histories);
    for await (const { workflowId, error } of results) {
      if (!error) continue;
      failure = `replaying its recorded history ${workflowId} failed: ${error.message}`;
      break;
    }
  } catch (error) {
    // A bundle that does not load fails the replay worker itself.
    failure = `its replay failed: ${(error as Error).message}`;
  }
  if (failure)
    throw new WorkflowCodeError(
      `the workflow code cannot run release ${latest.version}'s builds: ${failure}`,
    );
  return { release: latest.version, histories: histories.length };
}
