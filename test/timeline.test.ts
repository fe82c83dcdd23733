import { encodeUnifiedSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { lifecycleSettings, startSearchAttributes } from '../common/build-start';
import { formatDuration, timelineFromHistory, type Timeline } from '../api/timeline';
import { searchAttributes } from '../common/search-attributes';
import { buildRef } from '../common/build';
import type { buildWorkflow } from '../workflows';
import { buildWorkflowId, slotGrantedSignal, undeploySignal } from '../workflows/definitions';
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

describe('the timeline in words', () => {
  const EventType = temporal.api.enums.v1.EventType;
  const t0 = Date.parse('2026-12-05T10:00:00Z');
  const at = (seconds: number) => msToTs(t0 + seconds * 1000);
  const attributes = (status: string, initStatus: string) => ({
    indexedFields: encodeUnifiedSearchAttributes(undefined, [
      { key: searchAttributes.status, value: status },
      { key: searchAttributes.initStatus, value: initStatus },
    ]),
  });
  const upsert = (seconds: number, status: string, initStatus: string) => ({
    eventType: EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    eventTime: at(seconds),
    upsertWorkflowSearchAttributesEventAttributes: { searchAttributes: attributes(status, initStatus) },
  });

  it('says how long the build waited in line for its init slot, and how long its init ran', () => {
    const texts = timelineFromHistory([
      {
        events: [
          {
            eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
            eventTime: at(0),
            workflowExecutionStartedEventAttributes: { searchAttributes: attributes('initializing', 'todo') },
          },
          {
            eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
            eventTime: at(125),
            workflowExecutionSignaledEventAttributes: { signalName: slotGrantedSignal.name },
          },
          upsert(126, 'initializing', 'started'),
          upsert(378, 'starting', 'succeeded'),
          upsert(380, 'started', 'succeeded'),
          // Reset: in line again, granted at once, and the init fails after an hour and a minute.
          upsert(4000, 'initializing', 'todo'),
          {
            eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
            eventTime: at(4000),
            workflowExecutionSignaledEventAttributes: { signalName: slotGrantedSignal.name },
          },
          upsert(4001, 'initializing', 'started'),
          upsert(7661, 'failed', 'failed'),
        ],
      },
    ]).map((entry) => entry.text);
    expect(texts).toEqual([
      'Build created: Initializing — waiting for an initialization slot',
      'Initialization slot granted after 2 min 5 s in line',
      'Initializing — initializing the database',
      'Starting — initialized (4 min 12 s)',
      'Started',
      'Initializing — waiting for an initialization slot',
      'Initialization slot granted after 0 s in line',
      'Initializing — initializing the database',
      'Failed — initialization failed (1 h 1 min)',
    ]);
  });

  it('writes durations as people read them', () => {
    expect([0, 45_400, 60_000, 200_000, 3_600_000, 3_900_000].map(formatDuration)).toEqual([
      '0 s',
      '45 s',
      '1 min',
      '3 min 20 s',
      '1 h',
      '1 h 5 min',
    ]);
  });
});
