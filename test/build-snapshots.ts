import type { BuildCommand, BuildSnapshot, BuildStatus } from '../common/types';

// Build states for eviction's pure tests: each one created and scaled a second after the last.

let clock = 0;
/** The next instant of the tests' clock, a second after the last. */
export const at = () => new Date(Date.UTC(2026, 0, 1, 0, 0, clock++)).toISOString();

export function build(
  name: string,
  status: BuildStatus,
  { branch = '16.0', pr = null as number | null, pending = [] as BuildCommand[] } = {},
): BuildSnapshot {
  return {
    name,
    slug: name,
    commit: { repo: 'oca/x', target_branch: branch, pr, git_commit: 'a'.repeat(40) },
    status,
    init_status: status === 'failed' ? 'failed' : 'succeeded',
    created: at(),
    last_scaled: at(),
    last_error: null,
    pending_commands: pending,
  };
}
