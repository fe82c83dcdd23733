import { defaultPayloadConverter, optionalTsToDate, type SearchAttributes } from '@temporalio/common';
import { decodeSearchAttributes } from '@temporalio/common/lib/converter/payload-search-attributes';
import { temporal } from '@temporalio/proto';
import { searchAttributes } from '../common/search-attributes';
import { commandUpdate } from '../workflows/definitions';

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
  run_id: string | null;
  entries: TimelineEntry[];
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

/**
 * The build's transitions, from the history of its (current) workflow run: each status change
 * is an upsert of the RunboatStatus/RunboatInitStatus search attributes; signals are commands.
 */
export function timelineFromHistory(history: temporal.api.history.v1.IHistory): TimelineEntry[] {
  const EventType = temporal.api.enums.v1.EventType;
  const entries: TimelineEntry[] = [];
  let status: string | undefined;
  let initStatus: string | undefined;
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
    if (nextInit && nextInit !== initStatus) parts.push(INIT_TEXT[nextInit] ?? nextInit);
    const prefix = kind === 'created' ? 'Build created' : '';
    const text = [prefix, parts.join(' — ')].filter(Boolean).join(': ');
    entries.push({ time, kind, text, status: nextStatus, init_status: nextInit });
    [status, initStatus] = [nextStatus, nextInit];
  };
  for (const event of history.events ?? []) {
    const time = (optionalTsToDate(event.eventTime) ?? new Date(0)).toISOString();
    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: {
        const attributes = event.workflowExecutionStartedEventAttributes;
        const decoded = decodeSearchAttributes(attributes?.searchAttributes?.indexedFields);
        if (attributes?.continuedExecutionRunId) {
          entries.push({ time, kind: 'run', text: 'History continued in a new workflow run' });
          observe(time, decoded, 'status');
        } else observe(time, decoded, 'created');
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
        entries.push({ time, kind: 'signal', signal, text: SIGNAL_TEXT[signal] ?? `Signal ${signal}` });
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
        entries.push({ time, kind: 'run', text: 'Workflow continued as new (history goes on there)' });
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
