import { Connection } from '@temporalio/client';
import { expect, it } from 'vitest';
import { apiConnectionOptions, temporalRateLimitRefusals } from '../api/backend';
import { buildRef } from '../common/build';
import { metricSample, payloads, scrapeMetrics, useStack } from './api-server';
import { SHA, testConfig, waitFor } from './helpers';

// /metrics, scraped as Prometheus would, after real webhook deliveries.

const config = testConfig({ RUNBOAT_MAX_INITIALIZING: '1' });
const stack = useStack(config, { deploymentController: false });

const scrape = () => scrapeMetrics(stack.api);
const sample = (text: string, series: string) => metricSample(text, series) ?? NaN;

it('counts builds by status, the init queue, webhooks by outcome and requests by route', async () => {
  for (const sha of ['1', '2']) {
    expect((await stack.api.webhook('push', payloads.push('oca/web', `1${sha}.0`, SHA(sha)))).status).toBe(
      200,
    );
  }
  await stack.api.webhook('push', payloads.push('acme/web', '16.0', SHA('3')));
  await stack.api.webhook('push', '{"truncated":');
  const second = buildRef({ repo: 'oca/web', target_branch: '12.0', pr: null, git_commit: SHA('2') });

  // One init slot: the second build waits in line.
  const text = await waitFor('both builds counted and one queued', async () => {
    const scraped = await scrape();
    return sample(scraped, 'runboat_builds{status="initializing"}') === 2 &&
      sample(scraped, 'runboat_init_queue_length') === 1
      ? scraped
      : undefined;
  });
  expect(sample(text, 'runboat_builds{status="started"}')).toBe(0);
  expect(sample(text, 'runboat_webhooks_total{event="push",outcome="started"}')).toBe(2);
  expect(sample(text, 'runboat_webhooks_total{event="push",outcome="ignored"}')).toBe(1);
  expect(sample(text, 'runboat_webhooks_total{event="push",outcome="rejected"}')).toBe(1);
  expect(text).toContain(
    'runboat_http_request_duration_seconds_count{method="POST",route="/webhooks/github",status="200"}',
  );
  expect(text).not.toContain(second.name);
});

it("counts the calls Temporal refused past its rate limit, which the client's retries hide", async () => {
  // Visibility lists as fast as they answer, in this file's own namespace, until Temporal
  // refuses one (the dev server lets about 120 a second through): the API's connection
  // options ask again, and count it.
  const connection = await Connection.connect(apiConnectionOptions(config.temporalAddress));
  const before = sample(await scrape(), 'runboat_temporal_rate_limited_total');
  try {
    const list = () =>
      connection.workflowService.listWorkflowExecutions({
        namespace: config.temporalNamespace,
        query: `WorkflowType = 'none'`,
      });
    await waitFor(
      'a list refused past the rate limit',
      async () => {
        const lists = async () => {
          for (let i = 0; i < 50; i++) await list();
        };
        await Promise.all([lists(), lists(), lists(), lists()]);
        return temporalRateLimitRefusals() > 0;
      },
      60_000,
    );
  } finally {
    await connection.close();
  }
  expect(sample(await scrape(), 'runboat_temporal_rate_limited_total')).toBeGreaterThan(before);
});
