import {
  defineSearchAttributeKey,
  SearchAttributeType,
  type SearchAttributePair,
  type TypedSearchAttributes,
} from '@temporalio/common';
import type { BuildState, BuildStatus, InitStatus } from './types';

// The build workflow keeps these current so that listing and counting builds is a Temporal
// visibility query, with no side database. The server must know them before first use.
export const searchAttributes = {
  name: defineSearchAttributeKey('RunboatName', SearchAttributeType.KEYWORD),
  slug: defineSearchAttributeKey('RunboatSlug', SearchAttributeType.KEYWORD),
  repo: defineSearchAttributeKey('RunboatRepo', SearchAttributeType.KEYWORD),
  targetBranch: defineSearchAttributeKey('RunboatTargetBranch', SearchAttributeType.KEYWORD),
  pr: defineSearchAttributeKey('RunboatPr', SearchAttributeType.INT),
  commit: defineSearchAttributeKey('RunboatCommit', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('RunboatStatus', SearchAttributeType.KEYWORD),
  initStatus: defineSearchAttributeKey('RunboatInitStatus', SearchAttributeType.KEYWORD),
  created: defineSearchAttributeKey('RunboatCreated', SearchAttributeType.DATETIME),
  lastScaled: defineSearchAttributeKey('RunboatLastScaled', SearchAttributeType.DATETIME),
  lastVisited: defineSearchAttributeKey('RunboatLastVisited', SearchAttributeType.DATETIME),
  // When the listed fields last changed (milliseconds since the epoch): what `/build-events`
  // polls, so that a poll lists the builds that changed instead of every build. An Int, as SQL
  // visibility (PostgreSQL, the dev server's SQLite) has room for only 3 Datetime attributes.
  updated: defineSearchAttributeKey('RunboatUpdated', SearchAttributeType.INT),
} as const;

/** `value` as a string literal of Temporal's visibility query language. */
export function visibilityString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The build workflows of `taskQueue`, running or ended: one deployment's builds. */
export function buildWorkflowsQuery(taskQueue: string): string {
  return `WorkflowType = 'buildWorkflow' AND TaskQueue = ${visibilityString(taskQueue)}`;
}

/** The build workflows running on `taskQueue`: what every list and count of builds starts from. */
export function runningBuildsQuery(taskQueue: string): string {
  return `${buildWorkflowsQuery(taskQueue)} AND ExecutionStatus = 'Running'`;
}

/** `Name=Type` pairs, as `temporal server start-dev --search-attribute` takes them. */
export function searchAttributeDeclarations(): string[] {
  const cliType: Record<string, string> = {
    [SearchAttributeType.KEYWORD]: 'Keyword',
    [SearchAttributeType.INT]: 'Int',
    [SearchAttributeType.DATETIME]: 'Datetime',
  };
  return Object.values(searchAttributes).map((key) => `${key.name}=${cliType[key.type]}`);
}

/**
 * The attributes that describe `state`, set at start and upserted on every change, stamped
 * `updated` when given (builds of workflow code before `RunboatUpdated` have none).
 */
export function buildSearchAttributes(state: BuildState, updated?: Date): SearchAttributePair[] {
  const pairs: SearchAttributePair[] = [
    { key: searchAttributes.name, value: state.name },
    { key: searchAttributes.slug, value: state.slug },
    { key: searchAttributes.repo, value: state.commit.repo },
    { key: searchAttributes.targetBranch, value: state.commit.target_branch },
    { key: searchAttributes.commit, value: state.commit.git_commit },
    { key: searchAttributes.status, value: state.status },
    { key: searchAttributes.initStatus, value: state.init_status },
    { key: searchAttributes.created, value: new Date(state.created) },
  ];
  if (state.commit.pr !== null) pairs.push({ key: searchAttributes.pr, value: state.commit.pr });
  if (state.last_scaled) pairs.push({ key: searchAttributes.lastScaled, value: new Date(state.last_scaled) });
  if (state.last_visited)
    pairs.push({ key: searchAttributes.lastVisited, value: new Date(state.last_visited) });
  if (updated) pairs.push(updatedSearchAttribute(updated));
  return pairs;
}

/** `RunboatUpdated` stamped `at`. */
export function updatedSearchAttribute(at: Date): SearchAttributePair {
  return { key: searchAttributes.updated, value: at.getTime() };
}

/**
 * Those of `pairs` whose value `current` does not hold already: an upsert of the others would
 * record an event and a visibility write that change nothing.
 */
export function changedSearchAttributes(
  current: TypedSearchAttributes,
  pairs: SearchAttributePair[],
): SearchAttributePair[] {
  const comparable = (value: unknown) => (value instanceof Date ? value.getTime() : value);
  return pairs.filter((pair) => comparable(current.get(pair.key)) !== comparable(pair.value));
}

/** A build as visibility lists it: every field the API shows comes from search attributes. */
export type ListedBuild = Omit<BuildState, 'last_error'>;

/** The build a workflow's search attributes describe; undefined for one without them. */
export function buildFromSearchAttributes(attributes: TypedSearchAttributes): ListedBuild | undefined {
  const name = attributes.get(searchAttributes.name);
  const status = attributes.get(searchAttributes.status) as BuildStatus | undefined;
  const created = attributes.get(searchAttributes.created);
  // Started by an older API without attributes, before its first task: not listed until then.
  if (!name || !status || !created) return undefined;
  return {
    name,
    slug: attributes.get(searchAttributes.slug) ?? '',
    commit: {
      repo: attributes.get(searchAttributes.repo) ?? '',
      target_branch: attributes.get(searchAttributes.targetBranch) ?? '',
      pr: attributes.get(searchAttributes.pr) ?? null,
      git_commit: attributes.get(searchAttributes.commit) ?? '',
    },
    status,
    init_status: (attributes.get(searchAttributes.initStatus) ?? 'todo') as InitStatus,
    created: created.toISOString(),
    last_scaled: attributes.get(searchAttributes.lastScaled)?.toISOString() ?? null,
  };
}
