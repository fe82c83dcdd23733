import http from 'node:http';
import { brotliCompressSync, deflateSync } from 'node:zlib';
import { Webhooks } from '@octokit/webhooks';
import { WorkflowNotFoundError } from '@temporalio/client';
import { describe, expect, it, vi } from 'vitest';
import { getBuildState } from '../api/build-client';
import { lifecycleSettings } from '../common/build-start';
import { buildName, buildRef } from '../common/build';
import { logger } from '../common/logger';
import type { buildWorkflow } from '../workflows';
import { buildWorkflowId } from '../workflows/definitions';
import { payloads, startTestApi, useStack } from './api-server';
import { SHA, testConfig, waitFor } from './helpers';

// Real signed webhook deliveries over HTTP to the API, with a real worker behind it.

const config = testConfig({
  RUNBOAT_GITHUB_WEBHOOK_SECRET: 'webhook-secret',
  RUNBOAT_SKIP_DRAFT_PULL_REQUESTS: 'true',
  RUNBOAT_REPOS: JSON.stringify([
    { repo: '^oca/.*', branch: '^1[0-9]\\.0$', builds: [{ image: 'odoo:16' }] },
    // Any branch at all: only the service's own branch-name rule stands in the way.
    { repo: '^oca/permissive$', branch: '.*', builds: [{ image: 'odoo:16' }] },
  ]),
});
const stack = useStack(config);
const { cluster } = stack;

const workflowsOfQueue = () =>
  stack.temporal.client.workflow.count(
    `TaskQueue = '${config.taskQueue}' AND WorkflowType = 'buildWorkflow'`,
  );

describe('GitHub webhooks', () => {
  it('deploys a pushed commit', async () => {
    const response = await stack.api.webhook('push', payloads.push('OCA/Web', '16.0', SHA('1')));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { outcome: string; builds: string[] };
    expect(body.outcome).toBe('started');
    const { name } = buildRef({ repo: 'oca/web', target_branch: '16.0', pr: null, git_commit: SHA('1') });
    expect(body.builds).toEqual([name]);
    const deployment = await waitFor('the Deployment', () => cluster.deployment(name));
    expect(deployment.metadata?.annotations?.['runboat/repo']).toBe('oca/web');
  });

  it('deploys a pull request and cleans up all its builds when it is closed', async () => {
    for (const [action, sha] of [
      ['opened', SHA('2')],
      ['synchronize', SHA('3')],
    ]) {
      const response = await stack.api.webhook(
        'pull_request',
        payloads.pullRequest(action, 'oca/web', 42, '17.0', sha),
      );
      expect(response.status).toBe(200);
    }
    const names = [SHA('2'), SHA('3')].map(
      (sha) => buildRef({ repo: 'oca/web', target_branch: '17.0', pr: 42, git_commit: sha }).name,
    );
    for (const name of names) await waitFor('the PR Deployment', () => cluster.deployment(name));
    // Both builds must be visible before `closed` lists them.
    await waitFor('both builds listed', async () => {
      const listed = (await (
        await stack.api.request('GET', '/api/v1/builds?repo=oca/web&pr=42')
      ).json()) as unknown[];
      return listed.length === 2;
    });

    const closed = await stack.api.webhook(
      'pull_request',
      payloads.pullRequest('closed', 'oca/web', 42, '17.0', SHA('3')),
    );
    expect(((await closed.json()) as { builds: string[] }).builds.sort()).toEqual([...names].sort());
    for (const name of names) {
      await waitFor('cleanup job', async () => (await cluster.jobs(name, 'cleanup')).length > 0);
      await cluster.finishJob(name, 'cleanup', true);
      await stack.temporal.client.workflow.getHandle(buildWorkflowId(name)).result();
      expect(await cluster.builds.listBuildObjects(name)).toEqual([]);
    }
  });

  it('builds a draft pull request only once it is ready for review, and no more once it is a draft again', async () => {
    const pullRequest = (action: string, sha: string, draft: boolean) =>
      stack.api.webhook('pull_request', payloads.pullRequest(action, 'oca/web', 77, '16.0', sha, { draft }));
    const nameOf = (sha: string) =>
      buildRef({ repo: 'oca/web', target_branch: '16.0', pr: 77, git_commit: sha }).name;
    for (const [action, sha] of [
      ['opened', SHA('7')],
      ['synchronize', SHA('8')],
    ]) {
      const response = await pullRequest(action, sha, true);
      expect(await response.json()).toEqual({
        outcome: 'ignored',
        detail: 'pull request 77 is a draft (RUNBOAT_SKIP_DRAFT_PULL_REQUESTS)',
        builds: [],
      });
      await expect(
        stack.temporal.client.workflow.getHandle(buildWorkflowId(nameOf(sha))).describe(),
      ).rejects.toBeInstanceOf(WorkflowNotFoundError);
    }

    const ready = (await (await pullRequest('ready_for_review', SHA('8'), false)).json()) as {
      outcome: string;
      builds: string[];
    };
    expect(ready).toMatchObject({ outcome: 'started', builds: [nameOf(SHA('8'))] });
    await waitFor('the ready pull request Deployment', () => cluster.deployment(nameOf(SHA('8'))));

    const drafted = (await (await pullRequest('converted_to_draft', SHA('8'), true)).json()) as {
      outcome: string;
      builds: string[];
    };
    expect(drafted).toMatchObject({ outcome: 'undeployed', builds: [nameOf(SHA('8'))] });
    await waitFor('cleanup job', async () => (await cluster.jobs(nameOf(SHA('8')), 'cleanup')).length > 0);
    await cluster.finishJob(nameOf(SHA('8')), 'cleanup', true);
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(nameOf(SHA('8')))).result();
  });

  it('builds draft pull requests as runboat does when RUNBOAT_SKIP_DRAFT_PULL_REQUESTS is off', async () => {
    const runboatLike = await startTestApi(
      { ...config, skipDraftPullRequests: false },
      stack.temporal.client,
      cluster,
    );
    try {
      const draft = payloads.pullRequest('opened', 'oca/web', 78, '16.0', SHA('9'), { draft: true });
      const response = await runboatLike.webhook('pull_request', draft);
      const name = buildRef({ repo: 'oca/web', target_branch: '16.0', pr: 78, git_commit: SHA('9') }).name;
      expect(await response.json()).toMatchObject({ outcome: 'started', builds: [name] });
      // Marked ready for review, the same commit has its build already: nothing to do.
      const ready = payloads.pullRequest('ready_for_review', 'oca/web', 78, '16.0', SHA('9'));
      expect(await (await runboatLike.webhook('pull_request', ready)).json()).toMatchObject({
        outcome: 'ignored',
        detail: 'action ready_for_review',
      });
    } finally {
      await runboatLike.close();
    }
  });

  it('undeploys the head build of a closed PR even before visibility lists it', async () => {
    // A build whose workflow has not run a task yet has no search attributes, so no listing
    // finds it: started here on a task queue no worker polls, it stays that way.
    const head = { repo: 'oca/web', target_branch: '17.0', pr: 43, git_commit: SHA('6') };
    const { name } = buildRef(head);
    const handle = await stack.temporal.client.workflow.start<typeof buildWorkflow>('buildWorkflow', {
      workflowId: buildWorkflowId(name),
      taskQueue: `${config.taskQueue}-unpolled`,
      args: [{ build: buildRef(head), settings: lifecycleSettings(config) }],
    });
    try {
      const closed = await stack.api.webhook(
        'pull_request',
        payloads.pullRequest('closed', 'oca/web', 43, '17.0', SHA('6')),
      );
      expect(((await closed.json()) as { builds: string[] }).builds).toEqual([name]);
      const { events } = await handle.fetchHistory();
      const signals = (events ?? [])
        .map((e) => e.workflowExecutionSignaledEventAttributes?.signalName)
        .filter(Boolean);
      expect(signals).toEqual(['undeploy']);
    } finally {
      await handle.terminate('test over');
    }
  });

  it('makes one build of 20 concurrent redeliveries of the same push', async () => {
    const payload = JSON.stringify(payloads.push('oca/web', '15.0', SHA('4')));
    const responses = await Promise.all(Array.from({ length: 20 }, () => stack.api.webhook('push', payload)));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    const { name } = buildRef({ repo: 'oca/web', target_branch: '15.0', pr: null, git_commit: SHA('4') });
    await waitFor('the Deployment', () => cluster.deployment(name));
    expect(await stack.temporal.client.workflow.count(`WorkflowId = '${buildWorkflowId(name)}'`)).toEqual({
      count: 1,
      groups: [],
    });
    const { items } = await cluster.apps.listNamespacedDeployment({
      namespace: config.buildNamespace,
      labelSelector: `runboat/build=${name}`,
    });
    expect(items).toHaveLength(1);
  });

  it('undeploys the builds of a deleted branch', async () => {
    const { name } = buildRef({ repo: 'oca/web', target_branch: '14.0', pr: null, git_commit: SHA('5') });
    await stack.api.webhook('push', payloads.push('oca/web', '14.0', SHA('5')));
    await waitFor('listed', async () => {
      const listed = (await (
        await stack.api.request('GET', '/api/v1/builds?branch=14.0')
      ).json()) as unknown[];
      return listed.length === 1;
    });
    const response = await stack.api.webhook('push', payloads.push('oca/web', '14.0', SHA('5'), true));
    expect(((await response.json()) as { outcome: string }).outcome).toBe('undeployed');
    await waitFor(
      'undeploying',
      async () => (await getBuildState(stack.temporal.client, name)).status === 'undeploying',
    );
  });

  it('refuses bad deliveries with the documented status, starting nothing', async () => {
    const before = (await workflowsOfQueue()).count;
    const push = JSON.stringify(payloads.push('oca/web', '16.0', SHA('9')));
    const cases: Array<[string, Promise<Response>, number]> = [
      ['bad signature', stack.api.webhook('push', push, { secret: 'wrong' }), 401],
      ['unsigned', stack.api.webhook('push', push, { signature: null }), 401],
      ['malformed signature', stack.api.webhook('push', push, { signature: 'sha256=zz' }), 401],
      ['truncated JSON', stack.api.webhook('push', push.slice(0, 40)), 400],
      [
        'wrong types',
        stack.api.webhook('push', { ...payloads.push('oca/web', '16.0', SHA('9')), after: 42 }),
        400,
      ],
      ['missing fields', stack.api.webhook('pull_request', { action: 'opened' }), 400],
      ['10 MB body', stack.api.webhook('push', `{"pad":"${'x'.repeat(10 * 1024 * 1024)}"}`), 413],
      [
        'a sha that is not one',
        stack.api.webhook('push', payloads.push('oca/web', '16.0', '$(reboot)')),
        400,
      ],
    ];
    for (const [what, response, expected] of cases) {
      const answer = await response;
      expect(answer.status, what).toBe(expected);
      expect(((await answer.json()) as { detail: string }).detail, what).toBeTruthy();
    }
    for (const [event, body] of [
      ['issues', { action: 'opened' }],
      ['push', payloads.push('acme/other', '16.0', SHA('9'))],
      ['push', payloads.push('oca/web', 'main', SHA('9'))],
      ['push', { ...payloads.push('oca/web', '16.0', SHA('9')), ref: 'refs/tags/v1' }],
      // runboat keeps the ref's last `/` segment: these two would build as branch 16.0 there.
      // Here the branch is everything after refs/heads/, and tags are no branches.
      ['push', payloads.push('oca/web', 'feature/16.0', SHA('9'))],
      ['push', { ...payloads.push('oca/web', '16.0', SHA('9')), ref: 'refs/tags/16.0' }],
      ['pull_request', payloads.pullRequest('labeled', 'oca/web', 7, '16.0', SHA('9'))],
      // A Re-run of a check run, with check runs off (they are a GitHub App's).
      [
        'check_run',
        {
          action: 'rerequested',
          check_run: { name: 'runboat/build', external_id: 'oca-web-16-0-x' },
          repository: { full_name: 'oca/web' },
        },
      ],
    ] as const) {
      const answer = await stack.api.webhook(event, body);
      expect(answer.status, `${event} ${JSON.stringify(body).slice(0, 60)}`).toBe(200);
      expect(((await answer.json()) as { outcome: string }).outcome).toBe('ignored');
    }
    // Then a webhook that starts a build: once visibility lists it, it lists any build started
    // before it (the dev server has one history shard, which records its workflows oldest first).
    const last = buildRef({ repo: 'oca/web', target_branch: '16.0', pr: null, git_commit: SHA('9') });
    expect((await stack.api.webhook('push', payloads.push('oca/web', '16.0', SHA('9')))).status).toBe(200);
    const lastId = buildWorkflowId(last.name);
    await waitFor('the last build listed', async () => {
      const { count } = await stack.temporal.client.workflow.count(`WorkflowId = '${lastId}'`);
      return count === 1;
    });
    expect((await workflowsOfQueue()).count).toBe(before + 1);
    await stack.temporal.client.workflow.getHandle(lastId).terminate('test over');
  });

  it('refuses a push of a branch git could not have made, starting or undeploying nothing', async () => {
    for (const branch of ['../../x', '.hidden', 'a..b', 'feature/x.lock', 'x/']) {
      for (const deleted of [false, true]) {
        const answer = await stack.api.webhook(
          'push',
          payloads.push('oca/permissive', branch, SHA('8'), deleted),
        );
        expect(answer.status, branch).toBe(400);
        expect(((await answer.json()) as { detail: string }).detail, branch).toContain(
          JSON.stringify(branch),
        );
      }
      const commit = { repo: 'oca/permissive', target_branch: branch, pr: null, git_commit: SHA('8') };
      // No workflow under the id the build would have had (describe is exact, unlike a listing).
      await expect(
        stack.temporal.client.workflow.getHandle(buildWorkflowId(buildName(commit))).describe(),
      ).rejects.toBeInstanceOf(WorkflowNotFoundError);
    }
    // The same repo takes a branch git allows.
    const fine = await stack.api.webhook('push', payloads.push('oca/permissive', 'feature/x.y', SHA('8')));
    expect(fine.status).toBe(200);
  });

  describe('bodies the service cannot read', () => {
    const signedPush = async (sha: string) => {
      const text = JSON.stringify(payloads.push('oca/web', '16.0', sha));
      return { text, signature: await new Webhooks({ secret: 'webhook-secret' }).sign(text) };
    };
    const deliver = (body: Buffer | string, headers: Record<string, string>) =>
      fetch(`${stack.api.url}/webhooks/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', ...headers },
        body,
      });

    it("takes GitHub's form-encoded deliveries (a webhook's default content type), signed as sent", async () => {
      const json = JSON.stringify(payloads.push('oca/web', '16.0', SHA('f')));
      const form = new URLSearchParams({ payload: json }).toString();
      const signature = await new Webhooks({ secret: 'webhook-secret' }).sign(form);
      const formHeaders = {
        'content-type': 'application/x-www-form-urlencoded',
        'x-hub-signature-256': signature,
      };
      const answer = await deliver(form, formHeaders);
      expect(answer.status).toBe(200);
      const { name } = buildRef({ repo: 'oca/web', target_branch: '16.0', pr: null, git_commit: SHA('f') });
      expect(await answer.json()).toMatchObject({ outcome: 'started', builds: [name] });
      // Signed over the JSON rather than the body sent: refused.
      const jsonSignature = await new Webhooks({ secret: 'webhook-secret' }).sign(json);
      expect((await deliver(form, { ...formHeaders, 'x-hub-signature-256': jsonSignature })).status).toBe(
        401,
      );
      // A form without the payload field, or with one that is not JSON.
      for (const body of ['zen=hello', new URLSearchParams({ payload: '{"after":' }).toString()]) {
        const bad = await deliver(body, {
          ...formHeaders,
          'x-hub-signature-256': await new Webhooks({ secret: 'webhook-secret' }).sign(body),
        });
        expect(bad.status, body).toBe(400);
        expect(((await bad.json()) as { detail: string }).detail, body).toMatch(
          /no payload field|not valid JSON/,
        );
      }
    });

    it('answers 415 to an unknown Content-Encoding and 400 to a body that does not decode', async () => {
      const error = vi.spyOn(logger, 'error');
      try {
        const { text, signature } = await signedPush(SHA('a'));
        const cases: Array<[string, Buffer | string, string, number]> = [
          ['unknown encoding', text, 'compress', 415],
          ['made-up encoding', text, 'x-rot13', 415],
          ['deflate that is not', text, 'deflate', 400],
          ['br that is not', text, 'br', 400],
          ['gzip that is not', text, 'gzip', 400],
        ];
        for (const [what, body, encoding, status] of cases) {
          const answer = await deliver(body, {
            'content-encoding': encoding,
            'x-hub-signature-256': signature,
          });
          expect(answer.status, what).toBe(status);
          const { detail } = (await answer.json()) as { detail: string };
          expect(detail, what).toBeTruthy();
          if (status === 415) expect(detail, what).toContain(encoding);
        }
        expect(error).not.toHaveBeenCalled();
      } finally {
        error.mockRestore();
      }
    });

    it('reads deflate- and br-encoded bodies, checking the signature of what they hold', async () => {
      for (const [encoding, compress] of [
        ['deflate', deflateSync],
        ['br', brotliCompressSync],
      ] as const) {
        const { text, signature } = await signedPush(SHA('b'));
        const answer = await deliver(compress(text), {
          'content-encoding': encoding,
          'x-hub-signature-256': signature,
        });
        expect(answer.status, encoding).toBe(200);
        expect(((await answer.json()) as { outcome: string }).outcome, encoding).toBe('started');
      }
    });

    it('logs a client that aborts mid-body at info, not as an error', async () => {
      const error = vi.spyOn(logger, 'error');
      const info = vi.spyOn(logger, 'info');
      try {
        const request = http.request(`${stack.api.url}/webhooks/github`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-github-event': 'push',
            'content-length': '100000',
          },
        });
        request.on('error', () => undefined);
        // Headers and part of the body reach the socket, then the client goes away.
        await new Promise<void>((resolve) => request.write('{"ref": "refs/heads/16.0", ', () => resolve()));
        request.destroy();
        const logged = await waitFor('the aborted request logged', async () =>
          info.mock.calls.find((call) => call[1] === 'client aborted the request'),
        );
        expect(logged[0]).toMatchObject({ status: 400, path: '/webhooks/github' });
        expect(error).not.toHaveBeenCalled();
      } finally {
        error.mockRestore();
        info.mockRestore();
      }
    });
  });
});
