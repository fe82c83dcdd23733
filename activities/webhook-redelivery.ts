import { ApplicationFailure, Context, log } from '@temporalio/activity';
import type { Config } from '../common/config';
import { gitHubRefusal, type GitHub } from '../common/github';
import { lastScheduledResult } from '../common/schedules';
import { deliveriesToRedeliver, listingStart, type WebhookRedelivery } from '../common/webhook-redelivery';
import { webhookRedeliveryScheduleId } from '../workflows/definitions';

export function createWebhookRedelivery(config: Config, github: GitHub) {
  return {
    /**
     * Asks GitHub to send again the events of RUNBOAT_REDELIVER_WEBHOOKS that the API failed to
     * take since the last finished run (`deliveriesToRedeliver`). GitHub's rate limit or an
     * outage fails the activity (retried); a redelivery GitHub refuses for good is counted. A
     * webhook whose deliveries GitHub will not list (no such hook, a token without the right) fails
     * the run for good once the others are done, naming it: the next run lists from the last
     * finished one, so nothing is lost while the configuration is mended.
     */
    async redeliverFailedWebhooks(): Promise<WebhookRedelivery> {
      const { client } = Context.current();
      const previous = await lastScheduledResult<WebhookRedelivery>(
        client,
        webhookRedeliveryScheduleId(config),
      );
      const now = Date.now();
      const from = listingStart(previous, now);
      const result = { listedFrom: new Date(from).toISOString(), listedTo: new Date(now).toISOString() };
      let listed = 0;
      let redelivered = 0;
      let refused = 0;
      const unreadable: string[] = [];
      for (const hook of config.redeliverWebhooks) {
        let deliveries;
        try {
          deliveries = await github.webhookDeliveriesSince(hook, from);
        } catch (error) {
          if (gitHubRefusal(error)) throw error;
          unreadable.push(`${hook} (${String(error)})`);
          continue;
        }
        listed += deliveries.length;
        for (const delivery of deliveriesToRedeliver(deliveries)) {
          try {
            await github.redeliverWebhook(hook, delivery.id);
            redelivered++;
          } catch (error) {
            if (gitHubRefusal(error)) throw error;
            refused++;
            log.warn('GitHub refused to redeliver a webhook delivery', {
              hook,
              delivery: delivery.id,
              event: delivery.event,
              error: String(error),
            });
          }
        }
      }
      if (redelivered)
        log.info('asked GitHub to redeliver webhook events the API failed to take', { redelivered });
      if (unreadable.length)
        throw ApplicationFailure.nonRetryable(
          `GitHub refused to list the deliveries of ${unreadable.join('; ')}: check RUNBOAT_REDELIVER_WEBHOOKS, ` +
            'and that RUNBOAT_GITHUB_TOKEN may read them (admin:org_hook for an organization webhook, admin:repo_hook for a repository one), ' +
            "or the GitHub App (its Webhooks permission on the organization or the repository; app/hook is the App's own)",
          'WebhookDeliveriesUnreadable',
        );
      return { ...result, listed, redelivered, refused };
    },
  };
}
