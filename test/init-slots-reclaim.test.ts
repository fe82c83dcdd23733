import path from 'node:path';
import { temporal as temporalProto } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import type { BuildActivities } from '../activities';
import { binary } from '../scripts/paths';
import {
  initSlotsQuery,
  releaseSlotSignal,
  requestSlotSignal,
  type InitSlots,
  type InitSlotsWorkflow,
} from '../workflows/definitions';
import { answeredQuery, waitFor } from './helpers';

// The init-slot coordinator takes back the slot of a build that ended without giving it back,
// also while other builds keep it busy: on the time-skipping server, minutes pass in seconds.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: binary('temporal-test-server') } },
  });
});

afterAll(async () => {
  await env?.teardown();
});

it('reclaims the slot of an ended holder while grants keep coming less than a minute apart', async () => {
  const taskQueue = 'init-slots-reclaim';
  /** A holder whose build was terminated while it held its slot. */
  const ended = 'build-terminated-while-initializing';
  const endedWorkflows = vi.fn<BuildActivities['endedWorkflows']>(async (ids) =>
    ids.filter((id) => id === ended),
  );
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: path.resolve(__dirname, '..', 'workflows'),
    activities: { endedWorkflows },
  });
  await worker.runUntil(async () => {
    const start = (workflowId: string, initial: InitSlots) =>
      env.client.workflow.start<InitSlotsWorkflow>('initSlotsWorkflow', {
        args: [initial],
        taskQueue,
        workflowId,
      });
    const empty: InitSlots = { capacity: 0, holders: [], waiting: [], tokens: {} };
    // The builds asking for slots: any running workflow takes the grant signal.
    const requesters = ['a', 'b', 'c', 'd', 'e'].map((letter) => `build-${letter}`);
    for (const id of requesters) await start(id, empty);
    const coordinator = await start('coordinator', {
      capacity: 2,
      holders: [ended],
      waiting: [],
      tokens: {},
    });
    const slots = () => answeredQuery(coordinator, initSlotsQuery);

    for (const workflowId of requesters) {
      await coordinator.signal(requestSlotSignal, { workflowId, capacity: 2 });
      await waitFor(`${workflowId} granted`, async () => (await slots()).holders.includes(workflowId));
      await env.sleep('30 seconds');
      await coordinator.signal(releaseSlotSignal, workflowId);
    }

    // Two and a half minutes of steady grants, never a minute without one.
    expect(endedWorkflows).toHaveBeenCalled();
    expect((await slots()).holders).not.toContain(ended);
    for (const handle of [coordinator, ...requesters.map((id) => env.client.workflow.getHandle(id))]) {
      await handle.terminate('test over');
    }
  });
});

it('grants the slots free at once in one workflow task, and hands on the slot of a requester that is gone', async () => {
  const taskQueue = 'init-slots-at-once';
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: path.resolve(__dirname, '..', 'workflows'),
    activities: { endedWorkflows: async () => [] },
  });
  await worker.runUntil(async () => {
    const empty: InitSlots = { capacity: 0, holders: [], waiting: [], tokens: {} };
    const requesters = ['a', 'b', 'c', 'd'].map((letter) => `build-at-once-${letter}`);
    for (const workflowId of requesters) {
      await env.client.workflow.start<InitSlotsWorkflow>('initSlotsWorkflow', {
        args: [empty],
        taskQueue,
        workflowId,
      });
    }
    /** Asked for a slot, then its workflow ended before the grant (never started here). */
    const gone = 'build-at-once-gone';
    const coordinator = await env.client.workflow.start<InitSlotsWorkflow>('initSlotsWorkflow', {
      args: [{ capacity: 3, holders: [], waiting: [gone, ...requesters], tokens: {} }],
      taskQueue,
      workflowId: 'coordinator-at-once',
    });

    const { EventType } = temporalProto.api.enums.v1;
    const grantsInHistory = async () =>
      ((await coordinator.fetchHistory()).events ?? []).filter(
        (event) => event.eventType === EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
      );
    // A query can see a task's state before its commands are in the history: both are waited for.
    await waitFor('the gone requester’s slot handed on', async () => {
      const { holders, waiting } = await answeredQuery(coordinator, initSlotsQuery);
      return holders.join() === requesters.slice(0, 3).join() && waiting.join() === requesters[3];
    });
    await waitFor('four grants in the history', async () => (await grantsInHistory()).length === 4);
    const grants = await grantsInHistory();
    const grantedTo = grants.map(
      (event) => event.signalExternalWorkflowExecutionInitiatedEventAttributes?.workflowExecution?.workflowId,
    );
    expect(grantedTo).toEqual([gone, ...requesters.slice(0, 3)]);
    // The first three in the coordinator's first workflow task; the fourth once the grant to
    // the gone requester failed.
    const taskOf = (i: number) =>
      String(grants[i].signalExternalWorkflowExecutionInitiatedEventAttributes?.workflowTaskCompletedEventId);
    expect(new Set([0, 1, 2].map(taskOf)).size).toBe(1);
    expect(taskOf(3)).not.toBe(taskOf(0));
    for (const workflowId of ['coordinator-at-once', ...requesters]) {
      await env.client.workflow.getHandle(workflowId).terminate('test over');
    }
  });
});
