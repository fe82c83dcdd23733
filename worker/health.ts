import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

// The worker's probes (RUNBOAT_WORKER_HEALTH_ADDRESS): /healthz says the process answers; /readyz
// that it polls Temporal, with workflow code that passed its start-up check. A new worker image
// whose pods never get ready is never rolled out in place of the old one (deploy/worker.yaml).

export class WorkerHealth {
  private polling = false;
  private server: Server | undefined;

  /** Whether the worker polls Temporal now (false while it connects, waits out an outage, drains). */
  setPolling(polling: boolean): void {
    this.polling = polling;
  }

  /** Serves the probes at `host:port` (an empty host: every interface); resolves to the port. */
  async serve(address: string): Promise<number> {
    const separator = address.lastIndexOf(':');
    const host = address.slice(0, separator) || undefined;
    const port = Number(address.slice(separator + 1));
    const server = createServer((request, response) => {
      const { status, body } = this.answer(request.method, request.url);
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Probes must not keep a worker that is done from exiting.
    server.unref();
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private answer(method: string | undefined, url: string | undefined): { status: number; body: object } {
    if (method !== 'GET' && method !== 'HEAD') return { status: 405, body: { error: 'only GET' } };
    const pathname = new URL(url ?? '/', 'http://worker').pathname;
    if (pathname === '/healthz') return { status: 200, body: { status: 'ok' } };
    if (pathname === '/readyz')
      return this.polling
        ? { status: 200, body: { status: 'ready' } }
        : { status: 503, body: { status: 'not polling Temporal' } };
    return { status: 404, body: { error: `no ${pathname}: the worker serves /healthz and /readyz` } };
  }
}
