import path from 'node:path';

// Each test file runs its builds in a Temporal namespace of its own, registered when the shared
// dev server starts: a build's workflow id is its name, so two files building the same commit in
// one namespace would get each other's workflow (it happened: two CI runs failed on it).

/** The Temporal namespace of the test file at `file`. */
export function temporalNamespaceOf(file: string): string {
  return `test-${path.basename(file).replace(/\.test\.ts$/, '')}`;
}
