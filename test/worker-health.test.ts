import { afterAll, expect, it } from 'vitest';
import { WorkerHealth } from '../worker/health';

// The worker's probes (RUNBOAT_WORKER_HEALTH_ADDRESS): the process answers; it is ready only while it polls.

const health = new WorkerHealth();
afterAll(() => health.close());

it('answers /healthz always, /readyz only while the worker polls, and names what it serves', async () => {
  const url = `http://127.0.0.1:${await health.serve('127.0.0.1:0')}`;
  const status = async (path: string, method = 'GET') => (await fetch(`${url}${path}`, { method })).status;
  expect(await status('/healthz')).toBe(200);
  expect(await status('/readyz')).toBe(503);
  health.setPolling(true);
  expect(await status('/readyz')).toBe(200);
  expect(await status('/readyz?verbose=1')).toBe(200);
  health.setPolling(false);
  expect(await status('/readyz')).toBe(503);
  expect(await status('/metrics')).toBe(404);
  expect(await (await fetch(`${url}/metrics`)).json()).toEqual({
    error: 'no /metrics: the worker serves /healthz and /readyz',
  });
  expect(await status('/readyz', 'POST')).toBe(405);
});
