import { Context } from '@temporalio/activity';

// The worker's own counters, served beside the SDK's metrics at RUNBOAT_WORKER_METRICS_ADDRESS
// (as `<name>_total`, with the activity's tags and the labels below). One list, which the alert
// rules' test reads too.

export const WORKER_COUNTERS = {
  buildsAdopted: {
    name: 'runboat_builds_adopted',
    unit: 'builds',
    description:
      "Builds deployed without a workflow (runboat's, or whose history was lost), adopted by the orphan sweep",
    labels: [],
  },
  orphanObjectsDeleted: {
    name: 'runboat_orphan_objects_deleted',
    unit: 'objects',
    description: 'Objects of builds without a running workflow, deleted by the orphan sweep',
    labels: [],
  },
  githubReportsRefused: {
    name: 'runboat_github_reports_refused',
    unit: 'reports',
    description:
      'Reports GitHub refused for good and that were dropped, by target and HTTP status (403: the token or App lacks a permission; 404: no such repository, or the App not installed; 422: invalid)',
    labels: ['target', 'status'],
  },
} as const satisfies Record<
  string,
  { name: string; unit: string; description: string; labels: readonly string[] }
>;

type Labels<C extends keyof typeof WORKER_COUNTERS> = Record<
  (typeof WORKER_COUNTERS)[C]['labels'][number],
  string
>;

/** Adds `value` to the worker's counter `counter`; from an activity. */
export function count<C extends keyof typeof WORKER_COUNTERS>(
  counter: C,
  value: number,
  labels?: Labels<C>,
): void {
  const { name, unit, description } = WORKER_COUNTERS[counter];
  Context.current().metricMeter.createCounter(name, unit, description).add(value, labels);
}
