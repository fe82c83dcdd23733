import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ServiceDriver } from '../scripts/chaos-checks';

// The chaos driver's requests, against an API played on loopback: what it retries and what it
// takes as the answer. A chaos run whose API was killed while a DELETE was on its way counted
// the build's life as failed when the DELETE sent again found the build already undeployed.

let server: http.Server;
let answers: Array<'drop' | number>;
const requests: string[] = [];

beforeAll(async () => {
  server = http.createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    const answer = answers.shift() ?? 500;
    if (answer === 'drop') request.socket.destroy();
    else response.writeHead(answer, { 'content-type': 'application/json' }).end('{"detail":"x"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

const driver = () =>
  new ServiceDriver(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, {
    webhookSecret: 'secret',
    admin: { user: 'admin', password: 'admin' },
  });
const abort = new AbortController().signal;

it('takes a 404 to a DELETE sent again after one the API may have acted on as the build undeployed', async () => {
  for (const first of ['drop', 503] as const) {
    answers = [first, 404];
    requests.length = 0;
    const response = await driver().send('DELETE', '/api/v1/builds/b', abort);
    expect(response.status).toBe(404);
    expect(requests).toEqual(['DELETE /api/v1/builds/b', 'DELETE /api/v1/builds/b']);
  }
});

it('fails on a 404 to a first DELETE, to a DELETE only ever refused with 429, and to other methods', async () => {
  answers = [404];
  await expect(driver().send('DELETE', '/api/v1/builds/b', abort)).rejects.toThrow(/DELETE .*: 404/);
  answers = [429, 404];
  await expect(driver().send('DELETE', '/api/v1/builds/b', abort)).rejects.toThrow(/DELETE .*: 404/);
  answers = ['drop', 404];
  await expect(driver().send('POST', '/api/v1/builds/b/stop', abort)).rejects.toThrow(/POST .*: 404/);
});
