import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import type { Bounded } from '../api/backend';
import { createMetrics } from '../api/metrics';
import { WORKER_COUNTERS, WORKER_HISTOGRAMS } from '../common/worker-metrics';
import type { BuildIndex } from '../common/build-index';
import type { InitQueue } from '../api/init-queue';
import { loadConfig } from '../common/config';
import { dashboard, panelQueries, rules, selectors } from './prometheus-queries';

// deploy/prometheus-rules.yaml and deploy/grafana-dashboard.json: every expression must parse as
// PromQL and name only metrics, and labels of them, that the API or the worker exports
// (test/worker-metrics.test.ts scrapes the worker's as `<name>_total`, and the SDK's they use); an
// alert on a metric renamed since would never fire, a panel would stay empty.

/**
 * Each series name the API's registry exports (a histogram's three), and the worker's counters
 * and histograms, with their labels.
 */
/** `expr` parses, and selects only series of `series`, by labels they have. */
function expectExported(series: Map<string, Set<string>>, expr: string): void {
  const { errors, selected } = selectors(expr);
  expect(errors, expr).toBe(0);
  expect(selected.length).toBeGreaterThan(0);
  // The Temporal SDK's are checked against a worker's scrape (test/worker-metrics.test.ts).
  for (const { metric, labels } of selected.filter(({ metric }) => !metric.startsWith('temporal_'))) {
    expect([...series.keys()], `${metric} in ${expr}`).toContain(metric);
    for (const label of labels)
      expect([...(series.get(metric) ?? [])], `${metric}{${label}}`).toContain(label);
  }
}

function exportedSeries(): Map<string, Set<string>> {
  // Every optional metric registered: statuses reported, webhooks redelivered.
  const config = loadConfig({
    RUNBOAT_BUILD_NAMESPACE: 'builds',
    RUNBOAT_BUILD_DOMAIN: 'runboat.example.org',
    RUNBOAT_GITHUB_TOKEN: 'token',
    RUNBOAT_REDELIVER_WEBHOOKS: 'orgs/oca/hooks/1',
  });
  // Nothing is collected here: only the metrics' definitions are read.
  const unused = {} as Client;
  const { registry } = createMetrics(
    config,
    unused,
    (() => undefined) as unknown as Bounded,
    {} as BuildIndex,
    {} as InitQueue,
    () => 0,
  );
  const series = new Map<string, Set<string>>();
  const histogram = (name: string, labels: readonly string[]) => {
    series.set(`${name}_bucket`, new Set([...labels, 'le']));
    series.set(`${name}_sum`, new Set(labels));
    series.set(`${name}_count`, new Set(labels));
  };
  for (const metric of registry.getMetricsAsArray()) {
    const { name, labelNames, type } = metric as unknown as {
      name: string;
      labelNames: string[];
      type: string;
    };
    if (type === 'histogram') histogram(name, labelNames);
    else series.set(name, new Set(labelNames));
  }
  for (const { name, labels } of Object.values(WORKER_COUNTERS)) series.set(`${name}_total`, new Set(labels));
  for (const { name, labels } of Object.values(WORKER_HISTOGRAMS)) histogram(name, labels);
  return series;
}

describe('deploy/prometheus-rules.yaml', () => {
  const series = exportedSeries();

  it('has alerts, each named, with a severity, a summary and a description', () => {
    expect(rules.length).toBeGreaterThanOrEqual(8);
    for (const rule of rules) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^Runboat[A-Z]\w+$/);
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
    }
    expect(new Set(rules.map((rule) => rule.alert)).size).toBe(rules.length);
  });

  it.each(rules.map((rule) => [rule.alert, rule.expr]))(
    '%s: parses, and selects only series the service exports, by labels they have',
    (_alert, expr) => expectExported(series, expr),
  );

  it('tells a typo from an exported metric or label (the checks above can fail)', () => {
    const typos = selectors(
      'sum(rate(runboat_webhook_total[5m])) > 0 or sum(rate(runboat_webhooks_total{outcom="x"}[5m])) > 0',
    );
    expect(typos).toEqual({
      errors: 0,
      selected: [
        { metric: 'runboat_webhook_total', labels: [] },
        { metric: 'runboat_webhooks_total', labels: ['outcom'] },
      ],
    });
    expect(series.has('runboat_webhook_total')).toBe(false);
    expect(series.get('runboat_webhooks_total')).toEqual(new Set(['event', 'outcome']));
    expect(selectors('sum(rate(runboat_webhooks_total[5m]) >').errors).toBeGreaterThan(0);
  });
});

describe('deploy/grafana-dashboard.json', () => {
  const series = exportedSeries();
  const panels = dashboard.panels.filter((panel) => panel.type !== 'row');

  it('has panels, each titled, described and on the datasource variable, side by side', () => {
    expect(dashboard.uid).toBe('runboat');
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    expect(panels.length).toBeGreaterThanOrEqual(10);
    expect(new Set(dashboard.panels.map((panel) => panel.id)).size).toBe(dashboard.panels.length);
    for (const panel of panels) {
      expect(panel.title).toBeTruthy();
      expect(panel.description, panel.title).toBeTruthy();
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
    }
    // Within Grafana's 24 columns, and no two panels on the same cells.
    const cells = new Map<string, string>();
    for (const { title, gridPos } of dashboard.panels) {
      expect(gridPos.x + gridPos.w, title).toBeLessThanOrEqual(24);
      for (let x = gridPos.x; x < gridPos.x + gridPos.w; x++)
        for (let y = gridPos.y; y < gridPos.y + gridPos.h; y++) {
          expect(cells.get(`${x},${y}`), `${title} over another panel at ${x},${y}`).toBeUndefined();
          cells.set(`${x},${y}`, title);
        }
    }
  });

  it.each(panelQueries().map(({ query, expr }) => [query, expr]))(
    '%s: parses, and selects only series the service exports, by labels they have',
    (_query, expr) => expectExported(series, expr),
  );
});
