import type { Client } from '@temporalio/client';
import type { Config } from '../common/config';
import { logger } from '../common/logger';
import type { BuildRef } from '../common/types';
import { listBuilds } from '../common/build-list';
import { sendBuildCommand } from './build-client';

// Per-ref cap (RUNBOAT_MAX_BUILDS_PER_REF, runboat#154): a branch or pull request keeps only its
// newest builds. Applied where builds are started (webhooks, triggers), right after the start,
// by asking the older builds' workflows to undeploy, never by touching Kubernetes.

/**
 * Undeploys the builds of `started`'s branch or pull request beyond the newest `max`; returns
 * their names. Visibility lags: the build just started may not be listed yet, so it is counted
 * as the newest all the same.
 */
export async function capBuildsOfRef(client: Client, config: Config, started: BuildRef): Promise<string[]> {
  const max = config.maxBuildsPerRef;
  if (max === undefined) return [];
  const { repo, target_branch, pr } = started.commit;
  const filter = pr === null ? { repo, branch: target_branch } : { repo, pr };
  const listed = (await listBuilds(client, config, filter)).filter((build) => build.status !== 'undeploying');
  const others = listed.filter((build) => build.name !== started.name);
  const self = listed.find((build) => build.name === started.name);
  // Newest first; a build not listed yet was started just now, after every listed one.
  const newestFirst = [...others, ...(self ? [self] : [])].sort((a, b) => b.created.localeCompare(a.created));
  const ranked = self ? newestFirst : [{ name: started.name }, ...newestFirst];
  const excess = ranked.slice(max).map((build) => build.name);
  await Promise.all(excess.map((name) => sendBuildCommand(client, name, 'undeploy')));
  if (excess.length)
    logger.info({ ref: filter, kept: max, undeployed: excess }, 'per-ref cap: older builds undeployed');
  return excess;
}
