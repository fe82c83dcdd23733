import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getBuildState, startBuild } from '../api/build-client';
import type { BuildJson } from '../api/views';
import { logger } from '../common/logger';
import type { BuildRef, BuildStatus, CommitInfo } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import { startTestApi, startStack, type TestStack } from './api-server';
import { startGitHubRecorder, type GitHubRecorder } from './github-recorder';
import { SHA, TestCluster, testConfig, waitFor } from './helpers';

// Every REST endpoint over HTTP, with a real worker, Temporal and kube-apiserver behind it.

let github: GitHubRecorder;
let config: ReturnType<typeof testConfig>;
let cluster: TestCluster;
let stack: TestStack;
const builds: Record<string, BuildRef> = {};

const commit = (branch: string, pr: number | null, sha: string, repo = 'oca/account'): CommitInfo => ({
  repo,
  target_branch: branch,
  pr,
  git_commit: SHA(sha),
});
const get = async <T>(path: string): Promise<T> => {
  const response = await stack.api.request('GET', path);
  expect(response.status, path).toBe(200);
  return (await response.json()) as T;
};
const names = (list: BuildJson[]) => list.map((b) => b.name).sort();
const reach = (build: BuildRef, status: BuildStatus) =>
  waitFor(
    `${build.name} ${status}`,
    async () => (await getBuildState(stack.temporal.client, build.name)).status === status,
  );

beforeAll(async () => {
  github = await startGitHubRecorder();
  config = testConfig({
    RUNBOAT_API_ADMIN_PASSWD: 's3cret',
    // Three builds initialize at once: with fewer slots, which one waits depends on timing.
    RUNBOAT_MAX_INITIALIZING: '3',
    RUNBOAT_GITHUB_API_URL: github.url,
    RUNBOAT_BASE_URL: 'https://runboat.example.org',
    RUNBOAT_TEMPORAL_UI_URL: 'https://stack.temporal.example.org',
    RUNBOAT_NO_CLEANUP_JOB: 'true',
  });
  cluster = new TestCluster(config.buildNamespace);
  stack = await startStack(config, cluster);

  builds.branch = await startBuild(stack.temporal.client, config, commit('16.0', null, 'a'));
  builds.pr = await startBuild(stack.temporal.client, config, commit('16.0', 12, 'b'));
  builds.other = await startBuild(stack.temporal.client, config, commit('17.0', null, 'c', 'oca/stock'));
  await cluster.finishJob(builds.branch.name, 'initialize', true);
  await cluster.finishJob(builds.pr.name, 'initialize', false);
  await reach(builds.branch, 'started');
  await reach(builds.pr, 'failed');
  await waitFor('three builds listed', async () => (await get<BuildJson[]>('/api/v1/builds')).length === 3);
});

afterAll(async () => {
  await stack?.close();
  await github?.close();
});

describe('GET', () => {
  it('/status counts builds by status, with the limits', async () => {
    await waitFor('visible statuses', async () => {
      const status = await get<Record<string, number>>('/api/v1/status');
      return status.started === 1 && status.failed === 1;
    });
    expect(await get('/api/v1/status')).toEqual({
      deployed: 3,
      max_deployed: 10,
      failed: 1,
      stopped: 0,
      started: 1,
      max_started: 6,
      to_initialize: 0,
      initializing: 1,
      max_initializing: 3,
      undeploying: 0,
    });
  });

  it('/repos lists the repos with builds', async () => {
    expect(await get('/api/v1/repos')).toEqual([
      { name: 'oca/account', link: 'https://github.com/oca/account' },
      { name: 'oca/stock', link: 'https://github.com/oca/stock' },
    ]);
  });

  it('/builds filters by repo, target_branch, branch, pr and status', async () => {
    const all = [builds.branch, builds.pr, builds.other].map((b) => b.name).sort();
    expect(names(await get('/api/v1/builds'))).toEqual(all);
    expect(names(await get('/api/v1/builds?repo=OCA/account'))).toEqual(
      [builds.branch.name, builds.pr.name].sort(),
    );
    expect(names(await get('/api/v1/builds?target_branch=16.0'))).toEqual(
      [builds.branch.name, builds.pr.name].sort(),
    );
    expect(names(await get('/api/v1/builds?branch=16.0'))).toEqual([builds.branch.name]);
    expect(names(await get('/api/v1/builds?pr=12'))).toEqual([builds.pr.name]);
    expect(names(await get('/api/v1/builds?status=failed'))).toEqual([builds.pr.name]);
    expect(names(await get('/api/v1/builds?repo=oca/stock&status=started'))).toEqual([]);
  });

  it('/builds/{name} has runboat fields and a link to the workflow in the Temporal Web UI', async () => {
    const build = await get<BuildJson & { last_error: string | null }>(
      `/api/v1/builds/${builds.branch.name}`,
    );
    expect(build).toMatchObject({
      name: builds.branch.name,
      commit_info: commit('16.0', null, 'a'),
      deploy_link: `http://${builds.branch.slug}.runboat.test`,
      deploy_link_mailhog: `http://${builds.branch.slug}.mail.runboat.test`,
      repo_target_branch_link: 'https://github.com/oca/account/tree/16.0',
      repo_pr_link: null,
      repo_commit_link: `https://github.com/oca/account/commit/${SHA('a')}`,
      webui_link: `https://runboat.example.org/builds/${builds.branch.name}`,
      status: 'started',
      init_status: 'succeeded',
      workflow_link: `https://stack.temporal.example.org/namespaces/default/workflows/${buildWorkflowId(builds.branch.name)}`,
    });
    expect(Date.parse(build.created)).not.toBeNaN();
    expect(Date.parse(build.last_scaled as string)).not.toBeNaN();
    const pr = await get<BuildJson>(`/api/v1/builds/${builds.pr.name}`);
    expect(pr.repo_pr_link).toBe('https://github.com/oca/account/pull/12');
    const listed = await get<BuildJson[]>('/api/v1/builds?branch=16.0');
    expect(listed[0]).not.toHaveProperty('repo_pr_link');
  });

  it('/builds/{name}/init-log serves the log kept after the init failed', async () => {
    // No kubelet runs here, so no pod has a log: the test writes the copy the worker keeps.
    await cluster.core.createNamespacedConfigMap({
      namespace: config.buildNamespace,
      body: {
        metadata: { name: `${builds.pr.name}-init-log`, labels: { 'runboat/build': builds.pr.name } },
        data: { log: 'ERROR: module sale_x: no such addon\n' },
      },
    });
    const response = await stack.api.request('GET', `/api/v1/builds/${builds.pr.name}/init-log`);
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('no such addon');
    const none = await stack.api.request('GET', `/api/v1/builds/${builds.branch.name}/log`);
    expect(none.status).toBe(404);
    expect(await none.json()).toEqual({ detail: 'No log found.' });
  });

  it('answers 404 for unknown builds and 400 for bad parameters, as JSON', async () => {
    for (const [path, status] of [
      ['/api/v1/builds/no-such-build', 404],
      ['/api/v1/builds/Not_A_Name', 400],
      ['/api/v1/builds?pr=abc', 400],
      ['/api/v1/builds?status=sleeping', 400],
      ['/api/v1/builds?repo=oca', 400],
      ["/api/v1/builds?branch=16.0'%20OR%201=1", 400],
      ['/api/v1/nothing-here', 404],
    ] as const) {
      const response = await stack.api.request('GET', path);
      expect(response.status, path).toBe(status);
      expect(((await response.json()) as { detail: string }).detail, path).toBeTruthy();
    }
  });

  it('/openapi.json documents exactly the routes the app serves', async () => {
    const document = await get<{ paths: Record<string, Record<string, unknown>> }>('/api/v1/openapi.json');
    const documented = Object.entries(document.paths)
      .flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method} ${path}`))
      .sort();
    expect(documented).toEqual(stack.api.routes.map((r) => `${r.method} ${r.path}`).sort());
  });
});

describe('actions', () => {
  it('stop and start a build; reset initializes it again', async () => {
    expect((await stack.api.request('POST', `/api/v1/builds/${builds.branch.name}/stop`)).status).toBe(200);
    await reach(builds.branch, 'stopped');
    expect((await stack.api.request('POST', `/api/v1/builds/${builds.branch.name}/start`)).status).toBe(200);
    await reach(builds.branch, 'started');
    // Start on a started build is answered, and changes nothing.
    expect((await stack.api.request('POST', `/api/v1/builds/${builds.branch.name}/start`)).status).toBe(200);
    expect((await stack.api.request('POST', `/api/v1/builds/${builds.branch.name}/reset`)).status).toBe(200);
    await waitFor('a new init job', async () => {
      const [job] = await cluster.jobs(builds.branch.name, 'initialize');
      return job && !job.status?.conditions?.length;
    });
    await cluster.finishJob(builds.branch.name, 'initialize', true);
    await reach(builds.branch, 'started');
  });

  it('undeploy needs admin credentials, then answers 409 to further actions', async () => {
    const path = `/api/v1/builds/${builds.other.name}`;
    expect((await stack.api.request('DELETE', path)).status).toBe(401);
    const wrong = await fetch(`${stack.api.url}${path}`, {
      method: 'DELETE',
      headers: { authorization: `Basic ${Buffer.from('admin:nope').toString('base64')}` },
    });
    expect(wrong.status).toBe(401);
    expect((await stack.api.request('DELETE', path, { admin: true })).status).toBe(200);
    // Undeploying, or (no cleanup job) already gone: never accepted.
    const conflict = await stack.api.request('POST', `${path}/start`);
    expect([409, 404]).toContain(conflict.status);
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(builds.other.name)).result();
    expect((await stack.api.request('GET', path)).status).toBe(404);
  });

  it('undeploys by filter (admin), and refuses an empty filter', async () => {
    expect((await stack.api.request('DELETE', '/api/v1/builds?pr=12')).status).toBe(401);
    expect((await stack.api.request('DELETE', '/api/v1/builds', { admin: true })).status).toBe(400);
    const response = await stack.api.request('DELETE', '/api/v1/builds?pr=12', { admin: true });
    expect(await response.json()).toEqual({ undeployed: [builds.pr.name] });
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(builds.pr.name)).result();
  });

  it('triggers builds of a branch head and a PR head asked from GitHub (admin)', async () => {
    github.route('GET', '/repos/oca/account/branches/15.0', 200, { name: '15.0', commit: { sha: SHA('d') } });
    github.route('GET', '/repos/oca/account/pulls/77', 200, {
      number: 77,
      head: { sha: SHA('e') },
      base: { ref: '15.0' },
    });
    expect(
      (await stack.api.request('POST', '/api/v1/builds/trigger/branch?repo=oca/account&branch=15.0')).status,
    ).toBe(401);
    const branch = await stack.api.request(
      'POST',
      '/api/v1/builds/trigger/branch?repo=oca/account&branch=15.0',
      {
        admin: true,
      },
    );
    expect(branch.status).toBe(200);
    const pr = await stack.api.request('POST', '/api/v1/builds/trigger/pr?repo=oca/account&pr=77', {
      admin: true,
    });
    expect(pr.status).toBe(200);
    for (const [response, sha, number] of [
      [branch, 'd', null],
      [pr, 'e', 77],
    ] as const) {
      const { name } = (await response.json()) as { name: string };
      const state = await getBuildState(stack.temporal.client, name);
      expect(state.commit).toEqual(commit('15.0', number, sha));
      // Give the init slots back to the builds of the next tests.
      await cluster.finishJob(name, 'initialize', false);
    }
    const missing = await stack.api.request('POST', '/api/v1/builds/trigger/pr?repo=oca/account&pr=78', {
      admin: true,
    });
    github.route('GET', '/repos/oca/account/pulls/78', 404, { message: 'Not Found' });
    expect(missing.status).toBe(503);
    const notFound = await stack.api.request('POST', '/api/v1/builds/trigger/pr?repo=oca/account&pr=78', {
      admin: true,
    });
    expect(notFound.status).toBe(404);
    const unsupported = await stack.api.request(
      'POST',
      '/api/v1/builds/trigger/branch?repo=acme/x&branch=15.0',
      {
        admin: true,
      },
    );
    expect(unsupported.status).toBe(400);
  });
});

describe('build events', () => {
  it('streams the current builds, then upd when one stops and del when it is undeployed', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('18.0', null, 'f', 'oca/events'));
    await cluster.finishJob(build.name, 'initialize', true);
    await reach(build, 'started');
    await waitFor(
      'listed',
      async () => (await get<BuildJson[]>('/api/v1/builds?repo=oca/events')).length === 1,
    );

    const controller = new AbortController();
    const response = await fetch(`${stack.api.url}/api/v1/build-events?repo=oca/events`, {
      signal: controller.signal,
    });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    const received: Array<{ event: string; build: BuildJson }> = [];
    let buffer = '';
    const next = async (predicate: (e: { event: string; build: BuildJson }) => boolean) =>
      waitFor('an event', async () => {
        while (!received.some(predicate)) {
          const { value, done } = await reader.read();
          if (done) return false;
          buffer += value;
          const frames = buffer.split('\n\n');
          buffer = frames.pop() ?? '';
          for (const frame of frames) {
            const data = frame.split('\n').find((line) => line.startsWith('data: '));
            if (data) received.push(JSON.parse(data.slice(6)));
          }
        }
        return received.find(predicate);
      });
    try {
      const first = await next(() => true);
      expect(first).toMatchObject({ event: 'upd', build: { name: build.name, status: 'started' } });

      await stack.api.request('POST', `/api/v1/builds/${build.name}/stop`);
      const t0 = Date.now();
      await next((e) => e.event === 'upd' && e.build.status === 'stopped');
      expect(Date.now() - t0).toBeLessThan(5_000);

      await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true });
      await next((e) => e.event === 'del' && e.build.name === build.name);
      expect(received.every((e) => e.build.commit_info.repo === 'oca/events')).toBe(true);
    } finally {
      controller.abort();
    }
  });
});

describe('bad input', () => {
  it('answers 400, never 500, to a malformed percent-encoding in a path (API and UI)', async () => {
    const error = vi.spyOn(logger, 'error');
    try {
      for (const [method, path] of [
        ['GET', '/api/v1/builds/%zz'],
        ['POST', '/api/v1/builds/%zz/start'],
        ['GET', '/api/v1/builds/%E0%A4%A/init-log'],
        ['GET', '/builds/%zz/timeline.json'],
      ] as const) {
        const response = await stack.api.request(method, path);
        expect(response.status, path).toBe(400);
        expect(((await response.json()) as { detail: string }).detail, path).toMatch(/percent-encoding/);
      }
      const page = await stack.api.request('GET', '/builds/%zz');
      expect(page.status).toBe(400);
      expect(page.headers.get('content-type')).toMatch(/html/);
      expect(await page.text()).toMatch(/percent-encoding/);
      expect(error).not.toHaveBeenCalled();
    } finally {
      error.mockRestore();
    }
  });

  it('refuses branch filters that git could not have made', async () => {
    for (const branch of ['../../x', '.hidden', 'x.lock', 'a//b']) {
      const response = await stack.api.request('GET', `/api/v1/builds?branch=${encodeURIComponent(branch)}`);
      expect(response.status, branch).toBe(400);
      expect(((await response.json()) as { detail: string }).detail, branch).toMatch(/^branch /);
    }
  });

  it("answers 404 to an unknown build's timeline, every time", async () => {
    // The two Temporal calls behind it once raced: whichever failed first decided 404 or 500.
    for (let i = 0; i < 20; i++) {
      const response = await stack.api.request('GET', '/builds/no-such-build/timeline.json');
      expect(response.status, `request ${i + 1}`).toBe(404);
      expect(await response.json()).toEqual({ detail: 'build not found' });
    }
  });
});

describe('an API without its backends', () => {
  it('answers 503 with a clear message when Temporal is unreachable, quickly', async () => {
    const connection = Connection.lazy({ address: '127.0.0.1:9', connectTimeout: '1s' });
    const unreachable = await startTestApi(config, new Client({ connection }), cluster);
    try {
      const response = await unreachable.request('GET', '/api/v1/builds');
      expect(response.status).toBe(503);
      expect(((await response.json()) as { detail: string }).detail).toMatch(/unreachable/);
    } finally {
      await unreachable.close();
    }
  });

  it('gives the same answers from two API processes side by side', async () => {
    const second = await startTestApi(config, stack.temporal.client, cluster);
    try {
      for (const path of ['/api/v1/builds', '/api/v1/status', '/api/v1/repos']) {
        const [a, b] = await Promise.all([stack.api.request('GET', path), second.request('GET', path)]);
        expect(await b.json(), path).toEqual(await a.json());
      }
    } finally {
      await second.close();
    }
  });
});
