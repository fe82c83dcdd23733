import { z } from 'zod';
import { BUILD_NAME_PATTERN, branchNameProblem, SAFE_REPO } from '../common/build';
import { BUILD_STATUSES } from '../common/types';
import { HttpError } from './errors';

// The API's query and path parameters: what each must look like, and the one way a bad one is
// refused (400 naming the parameter).

export const repo = z
  .string()
  // Any case here: the value is lower-cased after, and the lower-cased one must be safe.
  .regex(new RegExp(SAFE_REPO.source, 'i'), 'must be owner/name')
  .transform((value) => value.toLowerCase());
export const branch = z.string().superRefine((value, context) => {
  const problem = branchNameProblem(value);
  if (problem) context.addIssue({ code: 'custom', message: problem });
});
export const pr = z.coerce.number().int().positive();
export const status = z.enum(BUILD_STATUSES);
export const buildName = z.string().regex(BUILD_NAME_PATTERN, 'is not a build name');

export const filterQuery = z.object({
  repo: repo.optional(),
  target_branch: branch.optional(),
  branch: branch.optional(),
  pr: pr.optional(),
});

/**
 * runboat skips an empty text filter (`?target_branch=`: its `if target_branch:`), so these
 * endpoints drop them before validation; an empty `pr` or `status` stays an error, as runboat's
 * FastAPI answers 422 to it. `DELETE /builds` with only empty filters is thus "no filter".
 */
export function ignoringEmptyFilters(query: Record<string, unknown>): Record<string, unknown> {
  const textFilters = new Set(['repo', 'target_branch', 'branch', 'build_name']);
  return Object.fromEntries(
    Object.entries(query).filter(([key, value]) => !(textFilters.has(key) && value === '')),
  );
}

/**
 * `value` as `schema` gives it, or a 400 naming the first problem: `<path> <problem>`, or with
 * a `context` (a webhook's "invalid payload") `<context>: <path or (root)> <problem>`.
 */
export function parseOr400<T>(schema: z.ZodType<T>, value: unknown, context?: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.join('.');
    throw new HttpError(
      400,
      context ? `${context}: ${where || '(root)'} ${issue.message}` : `${where} ${issue.message}`,
    );
  }
  return parsed.data;
}
