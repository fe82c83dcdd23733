import {
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { BuildActivities } from '../activities';
import {
  initSlotsQuery,
  releaseSlotSignal,
  requestSlotSignal,
  slotGrantedSignal,
  type InitSlots,
} from './definitions';

// A global semaphore of `capacity` init slots, shared by every build on every worker: one
// long-lived coordinator workflow grants slots in request order, and takes back the slots of
// builds that ended without giving theirs back (terminated, or failed by an operator).

const { endedWorkflows } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute' },
});

const RECLAIM_INTERVAL = '1 minute';
const RECLAIM_INTERVAL_MS = 60_000;
/**
 * The coordinator is replayed whole when it leaves a worker's cache (a workflow task that timed
 * out evicts it): on a starved worker, 2,000 events took longer than the task timeout, every
 * retry again, and no slot was granted. Shorter runs replay in a fraction of that.
 */
const MAX_HISTORY_EVENTS = 500;
/**
 * A grant is signalled without waiting for the signal to be delivered: the coordinator waited
 * for each (a workflow task per grant), so a burst's first `max_initializing` grants went one
 * after another, and a slot freed during a grant waited for it (the first build of a burst of
 * 100 had its slot 2.9 s after asking). Decided once per run: a run that began waiting keeps
 * waiting.
 */
const GRANTS_AT_ONCE_PATCH = 'init-slot-grants-at-once';

export async function initSlotsWorkflow(initial: InitSlots): Promise<void> {
  const slots: InitSlots = {
    ...initial,
    holders: [...initial.holders],
    waiting: [...initial.waiting],
    tokens: { ...initial.tokens },
  };
  const tokens = slots.tokens!;
  /** Holders asking again (a retried request): they are told again, not queued twice. */
  const regrant = new Set<string>();

  setHandler(requestSlotSignal, ({ workflowId, capacity, token }) => {
    slots.capacity = capacity;
    if (token === undefined) delete tokens[workflowId];
    else tokens[workflowId] = token;
    if (slots.holders.includes(workflowId)) regrant.add(workflowId);
    else if (!slots.waiting.includes(workflowId)) slots.waiting.push(workflowId);
  });
  setHandler(releaseSlotSignal, (workflowId) => {
    slots.holders = slots.holders.filter((id) => id !== workflowId);
    slots.waiting = slots.waiting.filter((id) => id !== workflowId);
    regrant.delete(workflowId);
    delete tokens[workflowId];
  });
  setHandler(initSlotsQuery, () => slots);

  const grantsAtOnce = patched(GRANTS_AT_ONCE_PATCH);
  /** Grants signalled and not yet delivered (grants at once): awaited before continuing as new. */
  const granting = new Set<Promise<void>>();
  const give = async (workflowId: string) => {
    if (!grantsAtOnce) return grant(workflowId);
    const signalled = grant(workflowId).finally(() => granting.delete(signalled));
    granting.add(signalled);
  };

  const canGrant = () => slots.waiting.length > 0 && slots.holders.length < slots.capacity;
  let lastReclaim = Date.now();
  // v1 looked for ended builds only after a minute without grants: under grants less than a
  // minute apart, the slot of a terminated holder was never taken back.
  const reclaimDue = (woken: boolean) =>
    !woken || (Date.now() - lastReclaim >= RECLAIM_INTERVAL_MS && patched('reclaim-under-steady-grants'));
  for (;;) {
    const woken = await condition(() => canGrant() || regrant.size > 0, RECLAIM_INTERVAL);
    for (const workflowId of regrant) {
      regrant.delete(workflowId);
      await give(workflowId);
    }
    while (canGrant()) {
      const workflowId = slots.waiting.shift() as string;
      slots.holders.push(workflowId);
      await give(workflowId);
    }
    if (slots.holders.length + slots.waiting.length > 0 && reclaimDue(woken)) {
      lastReclaim = Date.now();
      const ended = new Set(await endedWorkflows([...slots.holders, ...slots.waiting]));
      if (ended.size) log.warn('reclaiming init slots of ended builds', { workflowIds: [...ended] });
      slots.holders = slots.holders.filter((id) => !ended.has(id));
      slots.waiting = slots.waiting.filter((id) => !ended.has(id));
      for (const id of ended) delete tokens[id];
    }
    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength > MAX_HISTORY_EVENTS) {
      // A grant to a build that is gone hands its slot back (in `grant`): known before the state
      // is carried over.
      await Promise.all(granting);
      await continueAsNew<typeof initSlotsWorkflow>(slots);
    }
  }

  async function grant(workflowId: string): Promise<void> {
    try {
      await getExternalWorkflowHandle(workflowId).signal(slotGrantedSignal, tokens[workflowId]);
    } catch (error) {
      // The build is gone: its slot goes to the next in line.
      log.warn('init slot holder is gone', { workflowId, error: String(error) });
      slots.holders = slots.holders.filter((id) => id !== workflowId);
      delete tokens[workflowId];
    }
  }
}
