import { ServiceError, WorkflowNotFoundError } from '@temporalio/client';
import { RequestError } from '@octokit/request-error';
import type { ErrorRequestHandler } from 'express';
import { UnexpectedGitHubResponse } from '../activities/github';
import { UnsafeCommitInfoError } from '../common/build';
import { logger } from '../common/logger';
import { BuildBusyError, CommandRefusedError, UnsupportedBuildError } from './build-client';

/** An error with the HTTP status and message (`detail`) the client gets. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail);
  }
}

const isUnreachable = (error: unknown): boolean => {
  const code = (error as { code?: unknown })?.code;
  return (
    error instanceof ServiceError ||
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'EHOSTUNREACH',
      'ENOTFOUND',
      'UND_ERR_CONNECT_TIMEOUT',
    ].includes(String(code)) ||
    (error instanceof Error && /deadline exceeded|unavailable|timed? ?out/i.test(error.message))
  );
};

/** Errors are JSON `{detail}` (runboat's FastAPI shape), with the status SPEC §6 names. */
export const errorHandler: ErrorRequestHandler = (error: unknown, request, response, _next) => {
  let status = 500;
  let detail = 'internal error';
  if (error instanceof HttpError) [status, detail] = [error.status, error.detail];
  else if (error instanceof WorkflowNotFoundError) [status, detail] = [404, 'build not found'];
  else if (error instanceof RequestError) {
    // From GitHub: a missing branch or PR is the caller's 404; anything else is GitHub failing.
    [status, detail] =
      error.status === 404 ? [404, 'not found on GitHub'] : [503, `GitHub failed: ${error.message}`];
  } else if (error instanceof UnexpectedGitHubResponse) [status, detail] = [503, error.message];
  else if (error instanceof UnsafeCommitInfoError || error instanceof UnsupportedBuildError) {
    [status, detail] = [400, error.message];
  } else if (error instanceof CommandRefusedError) [status, detail] = [409, error.message];
  else if (error instanceof BuildBusyError) {
    [status, detail] = [429, error.message];
    response.set('retry-after', '1');
  } else if ((error as { type?: string }).type === 'entity.too.large')
    [status, detail] = [413, 'request body too large'];
  else if ((error as { type?: string }).type === 'entity.parse.failed')
    [status, detail] = [400, 'malformed JSON'];
  else if (isUnreachable(error))
    [status, detail] = [503, `a backend is unreachable: ${(error as Error).message}`];
  if (status >= 500)
    logger.error({ err: error, method: request.method, path: request.path }, 'request failed');
  response.status(status).json({ detail });
};
