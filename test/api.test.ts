import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getBuildState, startBuild } from '../api/build-client';
import { runboatOrder } from '../common/build-list';
import type { ListedBuild } from '../common/search-attributes';
import type { BuildJson } from '../api/views';
import { logger } from '../common/logger';
import type { BuildRef, BuildStatus, CommitInfo } from '../common/types';
import { buildWorkflowId } from '../workflows/definitions';
import { startTestApi, startStack, type TestStack } from './api-server';
import { startGitHubRecorder, type GitHubRecorder } from './github-recorder';
import {
  SHA,
  spawnApiProcess,
  TestCluster,
  testConfig,
  testTemporal,
  waitFor,
  untilBuildStatus,
} from './helpers';

const { EventType } = temporal.api.enums.v1;

// Every REST endpoint over HTTP, with a real worker, Temporal and kube-apiserver behind it.

let github: GitHubRecorder;
let config: ReturnType<typeof testConfig>;
let cluster: TestCluster;
let stack: TestStack;
const builds: Record<string, BuildRef> = {};
const FOOTER = '<p>Hosted by <a href="https://example.org/">Example</a> &amp; friends</p>';

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
  untilBuildStatus(stack.temporal.client, build.name, status);

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
    RUNBOAT_ADDITIONAL_FOOTER_HTML: FOOTER,
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

  it('/builds ignores empty text filters, as runboat does, and refuses an empty pr or status', async () => {
    const all = [builds.branch, builds.pr, builds.other].map((b) => b.name).sort();
    expect(names(await get('/api/v1/builds?repo=&target_branch=&branch='))).toEqual(all);
    expect(names(await get('/api/v1/builds?repo=oca/account&branch='))).toEqual(
      [builds.branch.name, builds.pr.name].sort(),
    );
    // runboat's FastAPI answers 422 to these: they are no filter to skip but a bad value.
    for (const path of ['/api/v1/builds?pr=', '/api/v1/builds?status=']) {
      expect((await stack.api.request('GET', path)).status, path).toBe(400);
    }
  });

  it('/builds lists in runboat order: repo, then branches before PRs (higher first), newest first', async () => {
    // runboat: ORDER BY repo DESC, COALESCE(pr, 999999) DESC, target_branch DESC, created DESC.
    const listed = await get<BuildJson[]>('/api/v1/builds');
    expect(listed.map((b) => b.name)).toEqual([builds.other.name, builds.branch.name, builds.pr.name]);
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
      workflow_link: `https://stack.temporal.example.org/namespaces/${config.temporalNamespace}/workflows/${buildWorkflowId(builds.branch.name)}`,
    });
    expect(Date.parse(build.created)).not.toBeNaN();
    expect(Date.parse(build.last_scaled as string)).not.toBeNaN();
    const pr = await get<BuildJson>(`/api/v1/builds/${builds.pr.name}`);
    expect(pr.repo_pr_link).toBe('https://github.com/oca/account/pull/12');
    // runboat links a PR build's commit within its pull request.
    expect(pr.repo_commit_link).toBe(`https://github.com/oca/account/pull/12/commits/${SHA('b')}`);
    // runboat lists with exclude_none, nested models included.
    const listed = await get<BuildJson[]>('/api/v1/builds?branch=16.0');
    expect(listed[0]).not.toHaveProperty('repo_pr_link');
    expect(listed[0].commit_info).toEqual({
      repo: 'oca/account',
      target_branch: '16.0',
      git_commit: SHA('a'),
    });
    const [listedPr] = await get<BuildJson[]>('/api/v1/builds?pr=12');
    expect(listedPr.commit_info.pr).toBe(12);
  });

  it('/builds/{name}/init-log serves the log kept after the init failed', async () => {
    // No kubelet runs here, so no pod has a log: the test writes the copy the worker keeps.
    await cluster.keepInitLog(
      builds.pr.name,
      '\x1b[1;31m\x1b[1;49mERROR\x1b[0m module <sale_x>: no such addon\n',
    );
    // HTML by default, like runboat (ansi2html): colours as classed spans, the text escaped.
    const path = `/api/v1/builds/${builds.pr.name}/init-log`;
    const response = await stack.api.request('GET', path);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await response.text();
    expect(html).toContain('<pre class="ansi2html-content">');
    expect(html).toContain('<span class="ansi1 ansi31">ERROR</span> module &lt;sale_x&gt;: no such addon');
    // The raw log to clients that ask for text.
    const text = await fetch(`${stack.api.url}${path}`, { headers: { accept: 'text/plain' } });
    expect(text.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await text.text()).toBe('\x1b[1;31m\x1b[1;49mERROR\x1b[0m module <sale_x>: no such addon\n');
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

  it('undeploy needs admin credentials, then answers 409 to further actions but a second undeploy', async () => {
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
    // A second undeploy (a redelivered `closed` webhook) is answered as done, not as a conflict.
    const again = await stack.api.request('DELETE', path, { admin: true });
    expect([200, 404]).toContain(again.status);
    await stack.temporal.client.workflow.getHandle(buildWorkflowId(builds.other.name)).result();
    expect((await stack.api.request('GET', path)).status).toBe(404);
  });

  it('undeploys by filter (admin), and refuses an empty filter', async () => {
    expect((await stack.api.request('DELETE', '/api/v1/builds?pr=12')).status).toBe(401);
    expect((await stack.api.request('DELETE', '/api/v1/builds', { admin: true })).status).toBe(400);
    // Empty filters are skipped, as runboat does: what is left is no filter, still refused.
    const empty = await stack.api.request('DELETE', '/api/v1/builds?repo=&target_branch=&branch=', {
      admin: true,
    });
    expect(empty.status).toBe(400);
    expect(await empty.json()).toEqual({ detail: 'give at least one of repo, target_branch, branch, pr' });
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

describe('commands under stress', () => {
  it('answers a flood of starts and stops during initialization without growing its history', async () => {
    const build = await startBuild(stack.temporal.client, config, commit('16.0', null, '7', 'oca/flood'));
    await waitFor('the init job', async () => (await cluster.jobs(build.name, 'initialize')).length > 0);
    const handle = stack.temporal.client.workflow.getHandle(buildWorkflowId(build.name));
    const historyLength = async () => (await handle.fetchHistory()).events?.length ?? 0;
    // Settled: watching its init job under the init timeout's timer, nothing else to do.
    await waitFor('the build watching its init job', async () => {
      const events = (await handle.fetchHistory()).events ?? [];
      const watch = events.findIndex(
        // runInitJob starts the Job and watches it, in one activity.
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runInitJob',
      );
      return watch >= 0 && events.at(-1)?.eventType === EventType.EVENT_TYPE_TIMER_STARTED;
    });
    const before = await historyLength();

    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        stack.api.request('POST', `/api/v1/builds/${build.name}/${i % 2 === 0 ? 'start' : 'stop'}`),
      ),
    );
    // The first few are answered (no-ops: the build is initializing); the rest are told to
    // come back later (429 with Retry-After) before they reach Temporal.
    const statuses = answers.map((response) => response.status);
    expect(statuses.filter((status) => status !== 200 && status !== 429)).toEqual([]);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThan(0);
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(150);
    for (const busy of answers.filter((response) => response.status === 429)) {
      expect(busy.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
    }
    expect(await historyLength()).toBe(before);
    expect((await getBuildState(stack.temporal.client, build.name)).pending_commands).toEqual([]);

    const undeploy = await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true });
    expect(undeploy.status).toBe(200);
    await handle.result();
  });

  it('accepts an undeploy while no worker runs, and carries it out when one comes', async () => {
    // A task queue no worker polls yet, in the file's namespace.
    const idle = testConfig({
      RUNBOAT_BUILD_NAMESPACE: config.buildNamespace,
      RUNBOAT_NO_CLEANUP_JOB: 'true',
      RUNBOAT_API_ADMIN_PASSWD: 's3cret',
    });
    const api = await startTestApi(idle, stack.temporal.client, cluster);
    const temporal = await testTemporal(idle, cluster);
    try {
      const build = await startBuild(temporal.client, idle, commit('16.0', null, '8', 'oca/idle'));
      const stop = await api.request('POST', `/api/v1/builds/${build.name}/stop`);
      expect(stop.status).toBe(200);
      const undeploy = await api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true });
      expect(undeploy.status).toBe(200);

      await temporal.startWorker();
      await temporal.client.workflow.getHandle(buildWorkflowId(build.name)).result();
      expect(await cluster.builds.listBuildObjects(build.name)).toEqual([]);
    } finally {
      await api.close();
      await temporal.close();
    }
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

    // Empty filters are skipped, as runboat does.
    const stream = await stack.api.follow('repo=oca/events&branch=&build_name=');
    try {
      expect(stream.response.headers.get('content-type')).toContain('text/event-stream');
      const first = await stream.next('an event', () => true);
      expect(first).toMatchObject({ event: 'upd', build: { name: build.name, status: 'started' } });

      await stack.api.request('POST', `/api/v1/builds/${build.name}/stop`);
      const t0 = Date.now();
      await stream.next('stopped', (e) => e.event === 'upd' && e.build.status === 'stopped');
      expect(Date.now() - t0).toBeLessThan(5_000);

      await stack.api.request('DELETE', `/api/v1/builds/${build.name}`, { admin: true });
      await stream.next('del', (e) => e.event === 'del' && e.build.name === build.name);
      expect(stream.received.every((e) => e.build.commit_info.repo === 'oca/events')).toBe(true);
    } finally {
      stream.close();
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
    // Two OS processes (api/main.ts), as deployed: nothing in one process's memory can help.
    const env = { RUNBOAT_BASE_URL: config.baseUrl, RUNBOAT_TEMPORAL_UI_URL: config.temporalUiUrl };
    const processes = await Promise.all([spawnApiProcess(config, env), spawnApiProcess(config, env)]);
    try {
      const [first, second] = processes.map(({ url }) => url);
      for (const path of [
        '/api/v1/builds',
        '/api/v1/status',
        '/api/v1/repos',
        `/api/v1/builds/${builds.branch.name}`,
      ]) {
        const [a, b] = await Promise.all([fetch(`${first}${path}`), fetch(`${second}${path}`)]);
        expect([a.status, b.status], path).toEqual([200, 200]);
        expect(await b.json(), path).toEqual(await a.json());
      }
      // They serve this test's builds, not merely the same empty answers.
      const build = (await (
        await fetch(`${second}/api/v1/builds/${builds.branch.name}`)
      ).json()) as BuildJson;
      expect(build.name).toBe(builds.branch.name);
    } finally {
      for (const { child } of processes) child.kill('SIGTERM');
    }
  });
});

describe('the Web UI frame', () => {
  it('shows RUNBOAT_ADDITIONAL_FOOTER_HTML as is on every page, as runboat does', async () => {
    for (const path of ['/', '/builds?repo=oca/account', `/builds/${builds.branch.name}`]) {
      const response = await stack.api.request('GET', path);
      expect(response.status, path).toBe(200);
      expect(await response.text(), path).toContain(`<footer class="site-footer">\n${FOOTER}\n</footer>`);
      // Operator HTML may show images from elsewhere; scripts and inline styles stay refused.
      const csp = response.headers.get('content-security-policy') ?? '';
      expect(csp, path).toContain("img-src 'self' data: https:");
      expect(csp, path).toContain("script-src 'self';");
    }
  });
});

describe("runboat's Web UI addresses", () => {
  it('redirect to the same pages here', async () => {
    const redirect = async (path: string) => {
      const response = await fetch(`${stack.api.url}${path}`, { redirect: 'manual' });
      expect(response.status, path).toBe(301);
      return response.headers.get('location');
    };
    expect(await redirect('/webui/builds.html?repo=oca/account&target_branch=16.0')).toBe(
      '/builds?repo=oca/account&target_branch=16.0',
    );
    expect(await redirect(`/webui/build.html?name=${builds.branch.name}`)).toBe(
      `/builds/${builds.branch.name}`,
    );
    expect((await stack.api.request('GET', '/webui/build.html?name=../x')).status).toBe(400);
  });
});

describe('runboatOrder', () => {
  const listed = (
    name: string,
    repo: string,
    branch: string,
    pr: number | null,
    created: string,
  ): ListedBuild => ({
    name,
    slug: name,
    commit: { repo, target_branch: branch, pr, git_commit: SHA(name) },
    status: 'stopped',
    init_status: 'succeeded',
    created,
    last_scaled: null,
  });
  const all = [
    listed('a', 'oca/b', '16.0', null, '2026-01-01T00:00:00Z'),
    listed('b', 'oca/b', '16.0', null, '2026-01-03T00:00:00Z'),
    listed('c', 'oca/b', '17.0', null, '2026-01-02T00:00:00Z'),
    listed('d', 'oca/b', '16.0', 9, '2026-01-04T00:00:00Z'),
    listed('e', 'oca/b', '16.0', 10, '2026-01-01T00:00:00Z'),
    listed('f', 'oca/a', '16.0', 1, '2026-01-05T00:00:00Z'),
  ];

  it('desc is runboat GET /builds: repo, PR (branches as 999999), branch, created, all descending', () => {
    expect(runboatOrder(all, 'desc').map((b) => b.name)).toEqual(['c', 'b', 'a', 'e', 'd', 'f']);
  });

  it('asc is runboat /build-events replay: the same, ascending', () => {
    expect(runboatOrder(all, 'asc').map((b) => b.name)).toEqual(['f', 'd', 'e', 'a', 'b', 'c']);
  });
});
