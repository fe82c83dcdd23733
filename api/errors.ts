import { ServiceError, WorkflowNotFoundError } from '@temporalio/client';
import { RequestError } from '@octokit/request-error';
import { STATUS_CODES } from 'node:http';
import type { ErrorRequestHandler, Request } from 'express';
import { GitHubAppNotInstalled, UnexpectedGitHubResponse } from '../common/github';
import { UnsafeCommitInfoError } from '../common/build';
import { BuildsNotListedError } from '../common/build-index';
import { logger } from '../common/logger';
import { BuildBusyError, CommandRefusedError, UnsupportedBuildError } from './build-client';

/** An error with the HTTP status and message (`detail`) the client gets. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly headers?: Record<string, string>,
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

/**
 * An error Express or body-parser raised about the request itself (http-errors style: a 4xx
 * `status`/`statusCode`), such as a malformed percent-encoding in the path (URIError, 400), an
 * unsupported Content-Encoding (415) or a client that aborted its body (400): the client's
 * mistake, never a 500.
 */
function clientError(error: unknown): { status: number; detail: string; type?: string } | undefined {
  const { status, statusCode, expose, message, type } = (error ?? {}) as {
    status?: unknown;
    statusCode?: unknown;
    expose?: unknown;
    message?: unknown;
    type?: unknown;
  };
  const code = typeof status === 'number' ? status : statusCode;
  if (typeof code !== 'number' || !Number.isInteger(code) || code < 400 || code > 499) return undefined;
  const shown = expose !== false && typeof message === 'string' && message !== '';
  return {
    status: code,
    detail: shown ? message : (STATUS_CODES[code] ?? 'bad request'),
    type: typeof type === 'string' ? type : undefined,
  };
}

/** The status and message (`detail`) a client gets for `error`, with the status SPEC §6 names. */
export function describeError(error: unknown): {
  status: number;
  detail: string;
  headers?: Record<string, string>;
} {
  if (error instanceof HttpError)
    return { status: error.status, detail: error.detail, headers: error.headers };
  if (error instanceof WorkflowNotFoundError) return { status: 404, detail: 'build not found' };
  if (error instanceof BuildsNotListedError) {
    // The list goes on after the request gave up waiting: asked again soon, it is likely there.
    return { status: 503, detail: error.message, headers: { 'retry-after': '2' } };
  }
  if (error instanceof RequestError) {
    // From GitHub: a missing branch or PR is the caller's 404; anything else is GitHub failing.
    return error.status === 404
      ? { status: 404, detail: 'not found on GitHub' }
      : { status: 503, detail: `GitHub failed: ${error.message}` };
  }
  if (error instanceof UnexpectedGitHubResponse || error instanceof GitHubAppNotInstalled)
    return { status: 503, detail: error.message };
  if (error instanceof UnsafeCommitInfoError || error instanceof UnsupportedBuildError) {
    return { status: 400, detail: error.message };
  }
  if (error instanceof CommandRefusedError) return { status: 409, detail: error.message };
  if (error instanceof BuildBusyError) {
    return { status: 429, detail: error.message, headers: { 'retry-after': '1' } };
  }
  const type = (error as { type?: string } | undefined)?.type;
  if (type === 'entity.too.large') return { status: 413, detail: 'request body too large' };
  if (type === 'entity.parse.failed') return { status: 400, detail: 'malformed JSON' };
  if (error instanceof URIError) {
    return { status: 400, detail: `malformed percent-encoding in the URL: ${error.message}` };
  }
  const client = clientError(error);
  if (client) return { status: client.status, detail: client.detail };
  if (isUnreachable(error)) {
    return { status: 503, detail: `a backend is unreachable: ${(error as Error).message}` };
  }
  return { status: 500, detail: 'internal error' };
}

/** Server failures are errors; a client's mistake (or its aborted upload) is not the service's. */
export function logRequestError(error: unknown, request: Request, status: number): void {
  const fields = { err: error, method: request.method, path: request.path, status };
  // A refusal the service chose (a cap reached) is not a failure of it.
  if (error instanceof HttpError && status >= 500)
    logger.warn({ ...fields, err: undefined, detail: error.detail }, 'request refused');
  else if (status >= 500) logger.error(fields, 'request failed');
  else if ((error as { type?: string } | undefined)?.type === 'request.aborted')
    logger.info(fields, 'client aborted the request');
  else if (!(error instanceof HttpError)) logger.debug(fields, 'bad request');
}

/** Errors are JSON `{detail}` (runboat's FastAPI shape). */
export const errorHandler: ErrorRequestHandler = (error: unknown, request, response, _next) => {
  const { status, detail, headers } = describeError(error);
  logRequestError(error, request, status);
  if (headers) response.set(headers);
  response.status(status).json({ detail });
};
