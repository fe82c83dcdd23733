import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Config } from '../common/config';
import {
  buildWorkflowId,
  initSlotsQuery,
  initSlotsWorkflowId,
  type InitSlots,
} from '../workflows/definitions';
import type { Bounded } from './backend';

// The line for init slots, as the API tells it: its length for the metrics, and a waiting
// build's place for the pages of that build. The init-slot coordinator is one workflow, and
// Temporal answers few queries of one workflow at once: a process queries it at most once every
// READ_EVERY_MS, however many pages and scrapes ask.

const READ_EVERY_MS = 2_000;

/** Where a build stands in the line for init slots (`GET /api/v1/builds/{name}/init-queue`). */
export interface InitQueuePlace {
  /** Its place among the builds waiting for a slot (1: the next to get one); null when not waiting. */
  place: number | null;
  /** Builds waiting for a slot. */
  waiting: number;
  /** Builds holding a slot: initializing. */
  initializing: number;
  max_initializing: number;
}

export class InitQueue {
  private lastRead?: { at: number; slots: Promise<InitSlots | undefined> };

  constructor(
    private readonly client: Client,
    private readonly config: Config,
    private readonly bounded: Bounded,
  ) {}

  /** The coordinator's slots and line, at most READ_EVERY_MS old; undefined before any build asked for a slot. */
  slots(): Promise<InitSlots | undefined> {
    if (this.lastRead === undefined || Date.now() - this.lastRead.at >= READ_EVERY_MS) {
      const handle = this.client.workflow.getHandle(initSlotsWorkflowId(this.config.taskQueue));
      const slots = this.bounded(() => handle.query(initSlotsQuery)).catch((error: unknown) => {
        if (error instanceof WorkflowNotFoundError) return undefined;
        // Not kept: the next caller asks again.
        if (this.lastRead?.slots === slots) this.lastRead = undefined;
        throw error;
      });
      this.lastRead = { at: Date.now(), slots };
    }
    return this.lastRead.slots;
  }

  async placeOf(name: string): Promise<InitQueuePlace> {
    const slots = await this.slots();
    const at = slots?.waiting.indexOf(buildWorkflowId(name)) ?? -1;
    return {
      place: at === -1 ? null : at + 1,
      waiting: slots?.waiting.length ?? 0,
      initializing: slots?.holders.length ?? 0,
      max_initializing: slots?.capacity ?? this.config.maxInitializing,
    };
  }
}
