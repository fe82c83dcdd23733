// Types shared by workflows, activities, the worker and the API. Pure declarations only:
// workflow code imports this module, so it must stay free of Node and I/O.

/** What identifies a build: the same four values always mean the same build. */
export interface CommitInfo {
  /** `owner/name`, lower-cased. */
  repo: string;
  target_branch: string;
  /** Pull request number, or null for a branch build. */
  pr: number | null;
  /** Full 40-character hex commit sha. */
  git_commit: string;
}

/** A build as the workflow knows it from its first event on. */
export interface BuildRef {
  /** Short unique id: a valid label value and the prefix of every object's name. */
  name: string;
  /** `<repo>-<target_branch>[-pr<N>]-<sha[:12]>`, the public host name's first label. */
  slug: string;
  commit: CommitInfo;
}

/**
 * The RUNBOAT_REPOS build entry a build was created with, carried in its workflow so that a
 * configuration change (the repo dropped, another image or kubefiles path) leaves running
 * builds as they were. `secret_env` is not in it: secrets never go into Temporal's history, and
 * are read from the worker's configuration at each render.
 */
export interface BuildRepoSettings {
  image: string;
  env: Record<string, string>;
  template_vars: Record<string, unknown>;
  /** Absent: the worker's default kubefiles. */
  kubefiles_path?: string;
}

/** The statuses runboat's API reports; clients rely on these exact seven names. */
export const BUILD_STATUSES = [
  'initializing',
  'failed',
  'stopped',
  'starting',
  'started',
  'stopping',
  'undeploying',
] as const;
export type BuildStatus = (typeof BUILD_STATUSES)[number];

/** Mirrors the Deployment annotation `runboat/init-status`. */
export type InitStatus = 'todo' | 'started' | 'succeeded' | 'failed';

/** The modes a kubefiles directory is rendered in (runboat's contract). */
export type KubefilesMode = 'deployment' | 'initialize' | 'start' | 'stop' | 'cleanup';

/** Jobs the orchestrator runs, told apart by their `runboat/job-kind` label. */
export type JobKind = 'initialize' | 'cleanup';

export type JobOutcome = { succeeded: true } | { succeeded: false; reason: string };

export type BuildCommand = 'start' | 'stop' | 'reset' | 'undeploy';

/** A build's exact state, as its workflow's query returns it. */
export interface BuildState extends BuildRef {
  status: BuildStatus;
  init_status: InitStatus;
  /** ISO 8601 timestamps. */
  created: string;
  last_scaled: string | null;
  /** Why the last initialization or cleanup failed, for people reading the build page. */
  last_error: string | null;
  /** When a person last opened the build (absent in states carried over from older runs). */
  last_visited?: string | null;
  /** Why an admin forced the undeploy (without the cleanup job), once one did. */
  forced_undeploy?: string | null;
}

/**
 * What one orphan sweep did: deleted the objects of `builds`, which have no running workflow,
 * and adopted the builds deployed with no workflow ever (absent from sweeps of older workers).
 */
export interface OrphanSweep {
  builds: string[];
  objects: number;
  adopted?: string[];
}

/** What the build workflow's query answers: its state and the commands it has yet to act on. */
export interface BuildSnapshot extends BuildState {
  pending_commands: BuildCommand[];
}
