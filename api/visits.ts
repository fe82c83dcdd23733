import type { Client } from '@temporalio/client';
import { logger } from '../common/logger';
import { buildWorkflowId, visitedSignal } from '../workflows/definitions';

// Visits (issue 11 §2): what keeps a started build from its idle stop. Counted when a person
// comes through this service (the wake handler, `?live`, the build page's link to the live
// instance); requests to the Odoo instance itself go through the ingress, never here, so they
// are not seen. One signal per build per interval at most, so a busy build does not grow its
// history: the idle stop is measured in minutes or hours, a minute's precision is plenty.

export const VISIT_INTERVAL_MS = 60_000;
const REMEMBERED = 10_000;

export class Visits {
  /** When each build's last visit was signalled, by this process (each API process keeps its own). */
  private readonly sent = new Map<string, number>();

  constructor(
    private readonly client: Client,
    private readonly intervalMs = VISIT_INTERVAL_MS,
  ) {}

  /** Signals the visit unless one was signalled within the interval; true when signalled. */
  async record(name: string): Promise<boolean> {
    const now = Date.now();
    const last = this.sent.get(name);
    if (last !== undefined && now - last < this.intervalMs) return false;
    this.sent.delete(name);
    this.sent.set(name, now);
    if (this.sent.size > REMEMBERED) this.sent.delete(this.sent.keys().next().value as string);
    try {
      await this.client.workflow.getHandle(buildWorkflowId(name)).signal(visitedSignal);
      return true;
    } catch (error) {
      // A visit is a hint: losing one stops a build a little early at worst.
      this.sent.delete(name);
      logger.warn({ err: error, build: name }, 'could not record a visit');
      return false;
    }
  }
}
