import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { parse } from 'yaml';

// deploy/prometheus-rules.yaml, read as Prometheus would: its rules, and what each expression
// selects. test/alerts.test.ts checks them against the service's own metrics, and
// test/worker-metrics.test.ts the Temporal SDK's ones against a worker's scrape.

export interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export const rules = (
  parse(readFileSync(path.join(__dirname, '..', 'deploy', 'prometheus-rules.yaml'), 'utf8')) as {
    groups: { name: string; rules: Rule[] }[];
  }
).groups.flatMap((group) => group.rules);

/** The metric names an expression selects, each with the label names its matchers use. */
export function selectors(expr: string): {
  errors: number;
  selected: { metric: string; labels: string[] }[];
} {
  let errors = 0;
  const selected: { metric: string; labels: string[] }[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors++;
      if (node.name !== 'VectorSelector') return;
      const metric = node.node.getChild('Identifier');
      const labels = node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? [];
      selected.push({
        metric: metric ? expr.slice(metric.from, metric.to) : '',
        labels: labels.map((matcher) => {
          const label = matcher.getChild('LabelName');
          return label ? expr.slice(label.from, label.to) : '';
        }),
      });
    },
  });
  return { errors, selected };
}

/** The series the rules select, each with the label names its matchers use. */
export const selectedSeries = (): { metric: string; labels: string[] }[] =>
  rules.flatMap((rule) => selectors(rule.expr).selected);
