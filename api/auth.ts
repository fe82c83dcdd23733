import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Config } from '../common/config';
import { HttpError } from './errors';

// HTTP Basic authentication of the admin endpoints (RUNBOAT_API_ADMIN_USER/_PASSWD).

const sha256 = (value: string) => createHash('sha256').update(value).digest();

export function adminOnly(config: Config): RequestHandler {
  return (request, _response, next) => {
    const match = /^Basic (.+)$/i.exec(request.get('authorization') ?? '');
    const [user, ...rest] = match ? Buffer.from(match[1], 'base64').toString('utf8').split(':') : [];
    const password = rest.join(':');
    // Constant time: compare digests of equal length, and both fields whatever the first gives.
    const userOk = timingSafeEqual(sha256(user ?? ''), sha256(config.adminUser));
    const passwordOk = timingSafeEqual(sha256(password), sha256(config.adminPassword ?? ''));
    if (!match || !config.adminPassword || !userOk || !passwordOk) {
      _response.set('www-authenticate', 'Basic realm="runboat"');
      throw new HttpError(401, 'admin credentials required');
    }
    next();
  };
}
