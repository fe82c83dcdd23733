import { proxyActivities } from '@temporalio/workflow';
import type { BuildActivities } from '../activities';
import type { WebhookRedelivery } from '../common/webhook-redelivery';

// Run by a Temporal Schedule when RUNBOAT_REDELIVER_WEBHOOKS names webhooks: the events GitHub
// failed to deliver (the API down, or unable to reach Temporal) are asked again, so that no push
// or pull request is left without its build.

const { redeliverFailedWebhooks } = proxyActivities<BuildActivities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3 },
});

export async function webhookRedeliveryWorkflow(): Promise<WebhookRedelivery> {
  return redeliverFailedWebhooks();
}
