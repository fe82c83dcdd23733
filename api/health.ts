import type { Client } from '@temporalio/client';
import { Router } from 'express';
import type { Bounded } from './backend';

// Probes: /healthz says the process answers; /readyz that it reaches Temporal in time.

export function healthRouter(client: Client, bounded: Bounded): Router {
  const router = Router();
  router.get('/healthz', (_request, response) => {
    response.json({ status: 'ok' });
  });
  router.get('/readyz', async (_request, response) => {
    await bounded(() => client.workflowService.getSystemInfo({}));
    response.json({ status: 'ready' });
  });
  return router;
}
