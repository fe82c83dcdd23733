import { describe, expect, it } from 'vitest';
import { lifecycleSettings, startSearchAttributes } from '../common/build-start';
import type { Timeline } from '../api/timeline';
import { buildRef } from '../common/build';
import type { buildWorkflow } from '../workflows';
import { buildWorkflowId, undeploySignal } from '../workflows/definitions';
import { useStack } from './api-server';
import { SHA, testConfig, waitFor } from './helpers';

// A build's timeline reads its whole workflow chain: after a continue-as-new the current run's
// history starts mid-life, and the build's creation is in an earlier run.

const config = testConfig({ RUNBOAT_NO_CLEANUP_JOB: 'true' });
const stack = useStack(config);

describe('the build timeline', () => {
  it('follows continue-as-new back to the first run', async () => {
    const build = buildRef({ repo: 'oca/timeline', target_branch: '16.0', pr: null, git_commit: SHA('7') });
    // A history limit of one event: the workflow continues as new after every phase.
    const handle = await stack.temporal.client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
      workflowId: buildWorkflowId(build.name),
      taskQueue: config.taskQueue,
      args: [{ build, settings: { ...lifecycleSettings(config), historyLimit: 1 } }],
      typedSearchAttributes: startSearchAttributes(build),
    });
    const firstRunId = handle.firstExecutionRunId;
    await waitFor('a continue-as-new', async () => (await handle.describe()).runId !== firstRunId, 60_000);
    await handle.signal(undeploySignal);
    await waitFor('the build undeployed', async () => (await handle.describe()).status.name === 'COMPLETED');

    const response = await stack.api.request('GET', `/builds/${build.name}/timeline.json`);
    expect(response.status).toBe(200);
    const timeline = (await response.json()) as Timeline;
    const current = (await handle.describe()).runId;
    expect(timeline.run_id).toBe(current);
    expect(timeline.runs[0]).toBe(firstRunId);
    expect(timeline.runs.at(-1)).toBe(current);
    expect(timeline.runs.length).toBeGreaterThanOrEqual(2);
    const kinds = timeline.entries.map((entry) => entry.kind);
    // Created in the first run, undeployed in the last, one 'run' entry between each two runs.
    expect(kinds[0]).toBe('created');
    expect(kinds.at(-1)).toBe('ended');
    expect(kinds.filter((kind) => kind === 'run')).toHaveLength(timeline.runs.length - 1);
    expect(timeline.entries.some((entry) => entry.signal === 'undeploy')).toBe(true);
  });
});
