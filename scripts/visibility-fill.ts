import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { startSearchAttributes } from '../common/build-start';
import { buildRef } from '../common/build';
import type { LifecycleSettings } from '../workflows/definitions';
import type { buildWorkflow } from '../workflows';
import { buildWorkflowId } from '../workflows/definitions';
import { forEachAtOnce } from './at-once';

/** Builds started at once: more only queue on the dev server. */
const CONCURRENT_STARTS = 4;

export interface VisibilityFill {
  taskQueue: string;
  /** The builds' lifecycle settings, as the API would start them. */
  settings: LifecycleSettings;
  /** The build number `i`'s repo. */
  repoOf: (i: number) => string;
}

/** Build number `i` of a fill: a pull request of its own, on a commit of its own. */
export function fillBuild(i: number, repo: string) {
  return buildRef({
    repo,
    target_branch: '16.0',
    pr: 100_000 + i,
    git_commit: (0x1000000 + i).toString(16).padStart(40, '0'),
  });
}

/**
 * Adds open build workflows number `from` to `until` (excluded), as the benchmarks fill
 * visibility up to thousands of builds without running them: a waiting build's search
 * attributes (eviction never picks one: an order would wake the workflow, which would then
 * deploy), its first workflow task 30 days away.
 */
export async function fillVisibility(
  client: Client,
  fill: VisibilityFill,
  from: number,
  until: number,
): Promise<{ added: number; ms: number }> {
  const t = Date.now();
  const startOne = async (i: number) => {
    const build = fillBuild(i, fill.repoOf(i));
    const start = () =>
      client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
        workflowId: buildWorkflowId(build.name),
        taskQueue: fill.taskQueue,
        args: [{ build, settings: fill.settings }],
        startDelay: '30 days',
        typedSearchAttributes: startSearchAttributes(build),
      });
    // A dev server starved of CPU times out now and then (even as "namespace not found").
    for (let attempt = 1; ; attempt++) {
      try {
        await start();
        return;
      } catch (error) {
        if (error instanceof WorkflowExecutionAlreadyStartedError) return; // an earlier attempt did
        if (attempt === 10) throw error;
        await sleep(1_000 * attempt);
      }
    }
  };
  const added = Math.max(0, until - from);
  await forEachAtOnce(added, CONCURRENT_STARTS, (i) => startOne(from + i));
  return { added, ms: Date.now() - t };
}
