import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { parse } from 'yaml';

// The queries deploy/ gives Prometheus, read as it would: the alert rules of
// deploy/prometheus-rules.yaml and the panels of deploy/grafana-dashboard.json, and what each
// expression selects. test/alerts.test.ts checks them against the service's own metrics, and
// test/worker-metrics.test.ts the Temporal SDK's ones against a worker's scrape.

const deployFile = (name: string) => readFileSync(path.join(__dirname, '..', 'deploy', name), 'utf8');

export interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export const rules = (
  parse(deployFile('prometheus-rules.yaml')) as {
    groups: { name: string; rules: Rule[] }[];
  }
).groups.flatMap((group) => group.rules);

export interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { refId: string; expr: string; legendFormat?: string }[];
}

export const dashboard = JSON.parse(deployFile('grafana-dashboard.json')) as {
  uid: string;
  title: string;
  templating: { list: { name: string; type: string; query?: string }[] };
  panels: Panel[];
};

/** A panel's query as Prometheus gets it: Grafana fills in its own variables first. */
export const asGrafanaSends = (expr: string): string => expr.replaceAll('$__rate_interval', '5m');

/** Every query of the dashboard's panels, named by panel and query. */
export const panelQueries = (): { query: string; expr: string }[] =>
  dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      query: `${panel.title} (${target.refId})`,
      expr: asGrafanaSends(target.expr),
    })),
  );

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

/**
 * The metric names an expression selects, each with the label names its matchers use and those
 * the aggregations around it group `by` (an alert's `{{ $labels.x }}` reads those: a label the
 * series lacks makes one group of everything, and an empty name in the alert).
 */
export function selectors(expr: string): {
  errors: number;
  selected: { metric: string; labels: string[] }[];
} {
  let errors = 0;
  const selected: { metric: string; labels: string[] }[] = [];
  const text = (node: SyntaxNode | null) => (node ? expr.slice(node.from, node.to) : '');
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors++;
      if (node.name !== 'VectorSelector') return;
      const matchers = node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? [];
      const labels = matchers.map((matcher) => text(matcher.getChild('LabelName')));
      for (let around = node.node.parent; around; around = around.parent) {
        const modifier = around.name === 'AggregateExpr' ? around.getChild('AggregateModifier') : null;
        if (modifier?.getChild('By'))
          labels.push(...(modifier.getChild('GroupingLabels')?.getChildren('LabelName') ?? []).map(text));
      }
      selected.push({ metric: text(node.node.getChild('Identifier')), labels: [...new Set(labels)] });
    },
  });
  return { errors, selected };
}

/** The series the rules and the dashboard select, each with the label names its matchers and groupings use. */
export const selectedSeries = (): { metric: string; labels: string[] }[] =>
  [...rules.map((rule) => rule.expr), ...panelQueries().map(({ expr }) => expr)].flatMap(
    (expr) => selectors(expr).selected,
  );
