import { randomUUID } from 'node:crypto';

// GitHub's side of one webhook, on loopback, for tests and `npm run chaos`: it delivers events
// to the service (once: GitHub never sends a failed delivery again by itself), records each
// attempt as its REST API lists a webhook's deliveries (newest first, a page at a time with a
// Link cursor), and sends one again when asked (a new attempt of the same event, guid).

export interface DeliveryAttempt {
  id: number;
  guid: string;
  delivered_at: string;
  /** The receiver's answer; 0 when there was none (GitHub could not connect, or timed out). */
  status_code: number;
  event: string;
  redelivery: boolean;
}

/** Sends one event to the receiver with its delivery guid, and gives its answer's status (0: none). */
export type WebhookSend = (event: string, body: string, guid: string) => Promise<number>;

export interface GitHubAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export class WebhookSide {
  readonly attempts: Array<DeliveryAttempt & { body: string }> = [];

  /** `hook`: as GitHub's REST API names it, `orgs/<org>/hooks/<id>` or `repos/<o>/<r>/hooks/<id>`. */
  constructor(
    readonly hook: string,
    private readonly send: WebhookSend,
  ) {}

  /** Delivers an event (again, given its guid); records and returns the attempt. */
  async deliver(event: string, body: string, guid: string = randomUUID(), redelivery = false) {
    const status = await this.send(event, body, guid).catch(() => 0);
    return this.record({ guid, status_code: status, event, redelivery, body });
  }

  /** An attempt made otherwise (an answer the receiver gave, or one long ago), as GitHub lists it. */
  record(attempt: Omit<DeliveryAttempt, 'id' | 'delivered_at'> & { body: string; delivered_at?: string }) {
    const recorded = { id: this.attempts.length + 1, delivered_at: new Date().toISOString(), ...attempt };
    this.attempts.push(recorded);
    return recorded;
  }

  attemptsOf(guid: string): DeliveryAttempt[] {
    return this.attempts.filter((attempt) => attempt.guid === guid);
  }

  /**
   * GitHub's REST answer to `method path` when it is about this webhook's deliveries (the list, a
   * redelivery); undefined otherwise. `baseUrl`: where the API is served, for the Link header.
   */
  answer(method: string, path: string, baseUrl: string): GitHubAnswer | undefined {
    const url = new URL(path, baseUrl);
    const deliveries = `/${this.hook}/deliveries`;
    if (method === 'GET' && url.pathname === deliveries) {
      const perPage = Number(url.searchParams.get('per_page') ?? 30);
      const from = Number(url.searchParams.get('cursor')?.replace('v1_', '') ?? 0);
      const newestFirst = [...this.attempts].sort(
        (a, b) => Date.parse(b.delivered_at) - Date.parse(a.delivered_at) || b.id - a.id,
      );
      const page = newestFirst.slice(from, from + perPage).map(({ body: _body, ...listed }) => listed);
      const next = `<${baseUrl}${deliveries}?per_page=${perPage}&cursor=v1_${from + perPage}>; rel="next"`;
      return {
        status: 200,
        body: page,
        headers: from + perPage < newestFirst.length ? { link: next } : undefined,
      };
    }
    const redelivery = new RegExp(`^${deliveries}/(\\d+)/attempts$`).exec(url.pathname);
    if (method !== 'POST' || !redelivery) return undefined;
    const attempt = this.attempts.find((each) => each.id === Number(redelivery[1]));
    if (!attempt) return { status: 404, body: { message: 'Not Found' } };
    // GitHub accepts, then sends it.
    void this.deliver(attempt.event, attempt.body, attempt.guid, true);
    return { status: 202, body: {} };
  }
}
