import { Client, Connection } from '@temporalio/client';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiConnectionOptions } from '../api/backend';
import { getBuildState, sendBuildCommand, startBuild } from '../api/build-client';
import type { BuildJson } from '../api/views';
import type { BuildRef, BuildStatus } from '../common/types';
import {
  buildEventPolls as polls,
  buildEventsListed,
  pollPastTheDeadline as pollPast,
  startTestApi,
  useStack,
  type BuildEvent,
  type EventStream,
} from './api-server';
import { consistently, SHA, testConfig, waitFor, untilBuildStatus } from './helpers';
import { runningBuildsQuery } from '../common/search-attributes';
import { startTcpProxy } from './tcp-proxy';

// `/build-events` over real HTTP for longer than the API's backend deadline, with subscribers
// joining at different times, crowds arriving and leaving together, and Temporal going away
// and coming back. Builds of oca/streams, a repo no other test file uses.

/** Short, so that "well past the deadline" is seconds; the API's default is 10 s. */
const DEADLINE_MS = 1_500;

const config = testConfig({ RUNBOAT_NO_CLEANUP_JOB: 'true' });
const stack = useStack(config, { backendTimeoutMs: DEADLINE_MS });
let build: BuildRef;

const reach = (status: BuildStatus) => untilBuildStatus(stack.temporal.client, build.name, status);

/** An `upd` of the build with this status, received after the stream's first `after` events. */
const update =
  (stream: EventStream, status: BuildStatus, after = 0) =>
  (event: BuildEvent) =>
    stream.received.indexOf(event) >= after &&
    event.event === 'upd' &&
    event.build.name === build.name &&
    event.build.status === status;

beforeAll(async () => {
  build = await startBuild(stack.temporal.client, config, {
    repo: 'oca/streams',
    target_branch: '16.0',
    pr: null,
    git_commit: SHA('5'),
  });
  await stack.cluster.finishJob(build.name, 'initialize', true);
  await reach('started');
  await waitFor('the build listed', async () => {
    const listed = (await (
      await stack.api.request('GET', '/api/v1/builds?repo=oca/streams')
    ).json()) as BuildJson[];
    return listed.length === 1;
  });
});

describe('build events', () => {
  it('keep every subscriber updated long past the backend deadline, whenever it joined', async () => {
    const streams: EventStream[] = [];
    try {
      for (const query of [
        `build_name=${build.name}`,
        'repo=oca/streams',
        'repo=oca/streams&target_branch=16.0',
      ]) {
        const stream = await stack.api.follow(query);
        streams.push(stream);
        await stream.next('the initial build', update(stream, 'started'));
        await pollPast(stack.api, DEADLINE_MS);
      }

      const seen = streams.map((stream) => stream.received.length);
      await stack.api.request('POST', `/api/v1/builds/${build.name}/stop`);
      await Promise.all(
        streams.map((stream, i) => stream.next('stopped', update(stream, 'stopped', seen[i]))),
      );
      await pollPast(stack.api, DEADLINE_MS);

      const stopped = streams.map((stream) => stream.received.length);
      await stack.api.request('POST', `/api/v1/builds/${build.name}/start`);
      await Promise.all(
        streams.map((stream, i) => stream.next('started again', update(stream, 'started', stopped[i]))),
      );
      expect(await polls(stack.api, 'failed')).toBe(0);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it('send their headers at once when no build matches, so that EventSource opens', async () => {
    // The first keepalive comes after 15 s: without the flush, the headers would wait for it.
    const response = await fetch(`${stack.api.url}/api/v1/build-events?repo=oca/nothing-here`, {
      signal: AbortSignal.timeout(5_000),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    await response.body?.cancel();
  });

  it('resume once Temporal is reachable again after an outage', async () => {
    const proxy = await startTcpProxy(config.temporalAddress);
    // Connected as the API connects: its retries end at a request's deadline, and one still
    // waiting when the test closes the connection ends there (api/backend.ts).
    const connection = await Connection.connect(apiConnectionOptions(proxy.address));
    const api = await startTestApi(
      config,
      new Client({ connection, namespace: config.temporalNamespace }),
      stack.cluster,
      { backendTimeoutMs: DEADLINE_MS },
    );
    const stream = await api.follow(`build_name=${build.name}`);
    try {
      await reach('started');
      await stream.next('the initial build', update(stream, 'started'));
      const seen = stream.received.length;

      proxy.cut();
      await waitFor('failed polls', async () => (await polls(api, 'failed')) >= 3);
      await stack.api.request('POST', `/api/v1/builds/${build.name}/stop`);
      await reach('stopped');
      proxy.restore();

      await stream.next('stopped, after the outage', update(stream, 'stopped', seen));
    } finally {
      stream.close();
      await api.close();
      await connection.close();
      await proxy.close();
    }
  });

  it('leave no poller behind when a crowd connects at once and leaves', async () => {
    const api = await startTestApi(config, stack.temporal.client, stack.cluster, {
      backendTimeoutMs: DEADLINE_MS,
    });
    try {
      const streams = await Promise.all(Array.from({ length: 50 }, () => api.follow('repo=oca/streams')));
      await Promise.all(
        streams.map((stream) => stream.next('the initial build', (event) => event.build.name === build.name)),
      );
      expect(api.events.subscriberCount).toBe(50);
      for (const stream of streams) stream.close();

      await waitFor(
        'no subscriber and no poll',
        async () => api.events.subscriberCount === 0 && !api.events.active,
      );
      const done = (await polls(api, 'ok')) + (await polls(api, 'failed'));
      await consistently(
        'no more polls',
        async () => (await polls(api, 'ok')) + (await polls(api, 'failed')) === done,
        2_000,
      );

      // And it polls again for the next one.
      const next = await api.follow('repo=oca/streams');
      await next.next('the initial build', (event) => event.build.name === build.name);
      next.close();
    } finally {
      await api.close();
    }
  });

  it('refuse streams beyond RUNBOAT_MAX_EVENT_STREAMS with a 503 to retry, and take them again once one leaves', async () => {
    const capped = { ...config, maxEventStreams: 2 };
    const api = await startTestApi(capped, stack.temporal.client, stack.cluster);
    try {
      const streams = await Promise.all([api.follow('repo=oca/streams'), api.follow('')]);
      for (const stream of streams) expect(stream.response.status).toBe(200);

      const refused = await api.request('GET', '/api/v1/build-events?repo=oca/streams');
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(((await refused.json()) as { detail: string }).detail).toContain('RUNBOAT_MAX_EVENT_STREAMS');
      // The streams already open go on.
      await streams[0].next('the initial build', (event) => event.build.name === build.name);

      streams[0].close();
      await waitFor('the stream gone', async () => api.events.subscriberCount === 1);
      const again = await api.follow('repo=oca/streams');
      expect(again.response.status).toBe(200);
      await again.next('the initial build', (event) => event.build.name === build.name);
      again.close();
      streams[1].close();
    } finally {
      await api.close();
    }
  });

  it('list only the builds that changed once running, and tell of a build that goes', async () => {
    // A lookback this short lets "nothing changed" come within the test; the default is 60 s.
    const api = await startTestApi(config, stack.temporal.client, stack.cluster, {
      backendTimeoutMs: DEADLINE_MS,
      eventsLookbackMs: 1_000,
    });
    const gone = await startBuild(stack.temporal.client, config, {
      repo: 'oca/streams',
      target_branch: '16.0',
      pr: 7,
      git_commit: SHA('6'),
    });
    const goneIs = (status: BuildStatus) => async () =>
      (await getBuildState(stack.temporal.client, gone.name)).status === status;
    await stack.cluster.finishJob(gone.name, 'initialize', true);
    await waitFor(`${gone.name} started`, goneIs('started'));
    const stream = await api.follow('repo=oca/streams');
    try {
      for (const name of [build.name, gone.name])
        await stream.next(`${name} at first`, (event) => event.build.name === name);

      // Two builds run; a poll that listed every build would count both.
      await waitFor('two polls in a row that list no build', async () => {
        const [from, listed] = [await polls(api, 'ok'), await buildEventsListed(api)];
        await waitFor('two more polls', async () => (await polls(api, 'ok')) >= from + 2);
        return (await buildEventsListed(api)) === listed;
      });

      const seen = stream.received.length;
      await api.request('POST', `/api/v1/builds/${gone.name}/stop`);
      await stream.next(
        'stopped',
        (event) =>
          stream.received.indexOf(event) >= seen &&
          event.event === 'upd' &&
          event.build.name === gone.name &&
          event.build.status === 'stopped',
      );
      await sendBuildCommand(stack.temporal.client, gone.name, 'undeploy');
      await stream.next('its deletion', (event) => event.event === 'del' && event.build.name === gone.name);
      // The other build was never told as gone.
      expect(
        stream.received.filter((event) => event.event === 'del').map((event) => event.build.name),
      ).toEqual([gone.name]);
      expect(await polls(api, 'failed')).toBe(0);
    } finally {
      stream.close();
      await api.close();
    }
  });

  it('changes_only: no builds first, then every change, a deletion told once even of a build never sent', async () => {
    // A lookback this short lets "nothing changed" come within the test; the default is 60 s.
    const api = await startTestApi(config, stack.temporal.client, stack.cluster, {
      backendTimeoutMs: DEADLINE_MS,
      eventsLookbackMs: 1_000,
    });
    const streams: EventStream[] = [];
    try {
      // Bad input: a 400 naming the parameter, and no stream.
      const bad = await api.request('GET', '/api/v1/build-events?changes_only=yes');
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { detail: string }).detail).toMatch(/^changes_only /);

      const still = await startBuild(stack.temporal.client, config, {
        repo: 'oca/streams',
        target_branch: '16.0',
        pr: 8,
        git_commit: SHA('8'),
      });
      // Nothing left in motion: the last test's build ended (its undeploy was told before its
      // workflow closed), and `still` waits on its init Job, which no one plays here. A change of
      // either after the quiet below would reach the stream as what it is, a change.
      const { client } = stack.temporal;
      await waitFor("only this file's builds running, `still` waiting on its init Job", async () => {
        const running = await client.workflow.count(runningBuildsQuery(config.taskQueue));
        return running.count === 2 && (await getBuildState(client, still.name)).init_status === 'started';
      });
      // Quiet: two polls in a row list nothing, so no change lies within the feed's lookback.
      streams.push(await api.follow('changes_only=true'));
      await waitFor('two polls in a row that list no build', async () => {
        const [from, listed] = [await polls(api, 'ok'), await buildEventsListed(api)];
        await waitFor('two more polls', async () => (await polls(api, 'ok')) >= from + 2);
        return (await buildEventsListed(api)) === listed;
      });

      // A stream opened now is sent neither `build` nor `still` (both run), only what changes.
      const stream = await api.follow('changes_only=true');
      streams.push(stream);
      const late = await startBuild(stack.temporal.client, config, {
        repo: 'oca/streams',
        target_branch: '16.0',
        pr: 9,
        git_commit: SHA('9'),
      });
      await stream.next('the new build', (event) => event.event === 'upd' && event.build.name === late.name);
      expect(stream.received.filter((event) => event.build.name !== late.name)).toEqual([]);

      // Undeployed, `still` is told as gone, though this stream was never sent it, and once.
      await sendBuildCommand(stack.temporal.client, still.name, 'undeploy');
      await stream.next('its deletion', (event) => event.event === 'del' && event.build.name === still.name);
      const deletions = () =>
        stream.received.filter((event) => event.event === 'del' && event.build.name === still.name).length;
      // Polls past the lookback could list its end no more; the events come in order, so once
      // the next deletion arrives every repeat of the first would have been read before it.
      const from = await polls(api, 'ok');
      await waitFor('polls past the lookback', async () => (await polls(api, 'ok')) >= from + 6);
      await sendBuildCommand(stack.temporal.client, late.name, 'undeploy');
      await stream.next(
        'the deletion of the new build',
        (event) => event.event === 'del' && event.build.name === late.name,
      );
      expect(deletions()).toBe(1);
    } finally {
      for (const stream of streams) stream.close();
      await api.close();
    }
  });
});
