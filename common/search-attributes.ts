import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

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
} as const;

/** `Name=Type` pairs, as `temporal server start-dev --search-attribute` takes them. */
export function searchAttributeDeclarations(): string[] {
  const cliType: Record<string, string> = {
    [SearchAttributeType.KEYWORD]: 'Keyword',
    [SearchAttributeType.INT]: 'Int',
    [SearchAttributeType.DATETIME]: 'Datetime',
  };
  return Object.values(searchAttributes).map((key) => `${key.name}=${cliType[key.type]}`);
}
