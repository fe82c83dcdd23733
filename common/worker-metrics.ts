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

/**
 * The worker's own histograms, served as `<name>_bucket`, `_sum` and `_count` with the buckets
 * given here (the SDK's defaults stop at 10 s). One list, as the counters'. Recorded by
 * activities (`observe`), or by workflows (the SDK's workflow `metricMeter`, never on replay).
 */
export const WORKER_HISTOGRAMS = {
  jobSeconds: {
    name: 'runboat_job_seconds',
    unit: 's',
    description:
      "How long builds' init and cleanup Jobs ran, from their start to their end as their status says, by kind and outcome",
    labels: ['kind', 'outcome'],
    buckets: [10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600],
  },
  buildReadySeconds: {
    name: 'runboat_build_ready_seconds',
    unit: 's',
    description:
      'How long people waited for builds to be started (their Deployment ready), by what they asked for: a new build from its webhook, a reset (or a failed build started again) from the command, both with the wait for an init slot and the init Job; a stopped build from its start (a visit, the button, the API). Waits that a stop, a failure or an undeploy ended are not counted',
    labels: ['request'],
    buckets: [5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200],
  },
} as const satisfies Record<
  string,
  { name: string; unit: string; description: string; labels: readonly string[]; buckets: readonly number[] }
>;
