import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, optionalTsToDate, type SearchAttributes } from '@temporalio/common';
import { decodeSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { temporal } from '@temporalio/proto';
import { searchAttributes } from '../common/search-attributes';
import { commandUpdate, slotGrantedSignal } from '../workflows/definitions';

// A build's timeline (`/builds/{name}/timeline.json`): its workflow history read as what
// happened to the build, in words for people.

/** One human-readable entry of a build's timeline. */
export interface TimelineEntry {
  time: string;
  kind: 'created' | 'status' | 'signal' | 'run' | 'ended';
  text: string;
  status?: string;
  init_status?: string;
  signal?: string;
}

export interface Timeline {
  workflow_id: string;
  /** The current run. */
  run_id: string | null;
  /** The runs read, oldest first: the chain of continue-as-new that ends with `run_id`. */
  runs: string[];
  entries: TimelineEntry[];
}

/**
 * Runs read at most, which bounds what one request reads: a build continues as new after 2,000
 * events and each time it comes to rest (stopped, failed), so this covers at least its last 50
 * stops (more when it is started and stopped again before its run has 20 events).
 */
export const MAX_TIMELINE_RUNS = 50;

type History = temporal.api.history.v1.IHistory;

/**
 * The timeline of a build's workflow from its first run: after a continue-as-new the current
 * run's history starts where the previous one ended, so the chain is followed back through
 * each run's `continuedExecutionRunId`. Throws WorkflowNotFoundError when there is no such
 * workflow.
 */
export async function readTimeline(client: Client, workflowId: string): Promise<Timeline> {
  // One after the other: describe says whether the build exists (WorkflowNotFoundError, a
  // 404); run side by side, whichever of the two failed first decided the status.
  const { runId: current } = await client.workflow.getHandle(workflowId).describe();
  const runs: string[] = [];
  const histories: History[] = [];
  let runId: string | undefined = current;
  while (runId && runs.length < MAX_TIMELINE_RUNS) {
    const history: History = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    runs.unshift(runId);
    histories.unshift(history);
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    runId = started?.continuedExecutionRunId || undefined;
  }
  const entries = timelineFromHistory(histories);
  if (runId) {
    const time = entries[0]?.time ?? new Date(0).toISOString();
    entries.unshift({
      time,
      kind: 'run',
      text: `Earlier workflow runs not shown (${MAX_TIMELINE_RUNS} read)`,
    });
  }
  return { workflow_id: workflowId, run_id: current ?? null, runs, entries };
}

const SIGNAL_TEXT: Record<string, string> = {
  start: 'Start requested',
  stop: 'Stop requested',
  reset: 'Reset requested (initialize again)',
  undeploy: 'Undeploy requested',
  forceUndeploy: 'Undeploy forced by an admin (cleanup job given up)',
  initSlotGranted: 'Initialization slot granted',
};

const INIT_TEXT: Record<string, string> = {
  todo: 'waiting for an initialization slot',
  started: 'initializing the database',
  succeeded: 'initialized',
  failed: 'initialization failed',
};

/** A duration for people: "45 s", "3 min 20 s", "1 h 5 min". */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return seconds % 60 ? `${minutes} min ${seconds % 60} s` : `${minutes} min`;
  return minutes % 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes / 60} h`;
}

/**
 * The build's transitions, from the histories of its workflow runs, oldest first: each status
 * change is an upsert of the RunboatStatus/RunboatInitStatus search attributes; signals and
 * updates are commands. The init slot's grant says how long the build waited in line, the
 * init's end how long it ran.
 */
export function timelineFromHistory(histories: History[]): TimelineEntry[] {
  const EventType = temporal.api.enums.v1.EventType;
  const entries: TimelineEntry[] = [];
  let status: string | undefined;
  let initStatus: string | undefined;
  /** When `initStatus` took its value: the grant and the init's end are timed from it. */
  let initStatusSince = 0;
  const sinceInitStatus = (time: string) => formatDuration(Date.parse(time) - initStatusSince);
  const single = (attributes: SearchAttributes, name: string) => {
    const values = attributes[name] as unknown[] | undefined;
    return values && values.length ? String(values[0]) : undefined;
  };
  const observe = (time: string, attributes: SearchAttributes, kind: 'created' | 'status') => {
    const nextStatus = single(attributes, searchAttributes.status.name) ?? status;
    const nextInit = single(attributes, searchAttributes.initStatus.name) ?? initStatus;
    if (kind === 'status' && nextStatus === status && nextInit === initStatus) return;
    const parts: string[] = [];
    if (nextStatus) parts.push(nextStatus.charAt(0).toUpperCase() + nextStatus.slice(1));
    if (nextInit && nextInit !== initStatus) {
      const ended = nextInit === 'succeeded' || nextInit === 'failed';
      const ran = ended && initStatus === 'started' ? ` (${sinceInitStatus(time)})` : '';
      parts.push(`${INIT_TEXT[nextInit] ?? nextInit}${ran}`);
      initStatusSince = Date.parse(time);
    }
    const prefix = kind === 'created' ? 'Build created' : '';
    const text = [prefix, parts.join(' — ')].filter(Boolean).join(': ');
    entries.push({ time, kind, text, status: nextStatus, init_status: nextInit });
    [status, initStatus] = [nextStatus, nextInit];
  };
  for (const event of histories.flatMap((history) => history.events ?? [])) {
    const time = (optionalTsToDate(event.eventTime) ?? new Date(0)).toISOString();
    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: {
        const attributes = event.workflowExecutionStartedEventAttributes;
        const decoded = decodeSearchAttributes(attributes?.searchAttributes?.indexedFields);
        // A continued run says nothing new: the previous run's last event said it continued.
        observe(time, decoded, attributes?.continuedExecutionRunId ? 'status' : 'created');
        break;
      }
      case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        observe(
          time,
          decodeSearchAttributes(
            event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields,
          ),
          'status',
        );
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: {
        const signal = event.workflowExecutionSignaledEventAttributes?.signalName ?? 'signal';
        // Visits only postpone the idle stop: one a minute of use would drown the timeline.
        if (signal === 'visited') break;
        const inLine =
          signal === slotGrantedSignal.name && initStatus === 'todo'
            ? ` after ${sinceInitStatus(time)} in line`
            : '';
        entries.push({
          time,
          kind: 'signal',
          signal,
          text: `${SIGNAL_TEXT[signal] ?? `Signal ${signal}`}${inLine}`,
        });
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: {
        // Commands arrive as updates (refused ones leave no event); the signals above are the
        // same commands sent while no worker could answer.
        const input = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input;
        const [argument] = input?.args?.payloads ?? [];
        const command = argument ? defaultPayloadConverter.fromPayload<string>(argument) : undefined;
        if (input?.name !== commandUpdate.name || !command) break;
        entries.push({
          time,
          kind: 'signal',
          signal: command,
          text: SIGNAL_TEXT[command] ?? `Command ${command}`,
        });
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        entries.push({
          time,
          kind: 'run',
          text: 'Workflow continued as new: its history goes on in a new run',
        });
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        entries.push({ time, kind: 'ended', text: 'Undeployed: the build is gone' });
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        entries.push({ time, kind: 'ended', text: 'The build workflow ended abnormally' });
        break;
    }
  }
  return entries;
}
