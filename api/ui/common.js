/* global document, window, fetch, console, EventSource, setTimeout, clearTimeout, URLSearchParams */
// Shared by every page: DOM helpers (text only, never HTML from data), build cards, actions
// and the build-events stream with reconnection.

/**
 * Creates an element. `attrs` are set as attributes (`text` sets textContent); children are
 * nodes or strings, added as text. Nothing from a build is ever parsed as HTML.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  }
  return el;
}

export const STATUS_LABELS = {
  initializing: 'Initializing',
  failed: 'Failed',
  stopped: 'Stopped',
  starting: 'Starting',
  started: 'Started',
  stopping: 'Stopping',
  undeploying: 'Undeploying',
};

/** Which actions apply to a build in `status` (the API accepts them all; these change something). */
export function actionsFor(status) {
  return {
    start: status === 'stopped' || status === 'failed',
    stop: status === 'started' || status === 'starting',
    reset: status !== 'undeploying',
  };
}

const ACTION_LABELS = {
  start: ['Start', 'Starting…'],
  stop: ['Stop', 'Stopping…'],
  reset: ['Reset', 'Resetting…'],
};

export function shortSha(sha) {
  return String(sha).slice(0, 8);
}

export function age(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (Number.isNaN(seconds)) return '';
  if (seconds < 45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

export function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

/** `branch` or `PR #12 → branch`, the row a build belongs to. */
export function rowTitle(commit) {
  return commit.pr ? `PR #${commit.pr} → ${commit.target_branch}` : commit.target_branch;
}

/** The text a search token is compared with: repo, branch, PR number, commit, name. */
export function matchesSearch(build, query) {
  const tokens = String(query).trim().toLowerCase().split(/\s+/).filter(Boolean);
  const { repo, target_branch: branch, pr, git_commit: commit } = build.commit_info;
  return tokens.every((token) => {
    const number = token.replace(/^(#|pr#?|pull\/)/, '');
    return (
      repo.toLowerCase().includes(token) ||
      branch.toLowerCase().includes(token) ||
      (pr != null && String(pr) === number) ||
      commit.toLowerCase().startsWith(token) ||
      build.name.includes(token)
    );
  });
}

export async function getJson(path) {
  const response = await fetch(path, { headers: { accept: 'application/json' } });
  if (!response.ok) {
    const error = new Error(await errorDetail(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** 1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, …, 21st. */
export function ordinal(n) {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  return `${n}${teen ? 'th' : { 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th'}`;
}

/** A build's place in the line for init slots, in words; '' when it is not in line. */
export function initQueueText({ place, initializing, max_initializing: capacity }) {
  if (place === null) return '';
  return `Waiting for an init slot: ${ordinal(place)} in line, ${initializing} of ${capacity} slots busy.`;
}

const INIT_QUEUE_POLL_MS = 5_000;

/**
 * Follows a build's place in the line for init slots while it waits for one: `show` gets it in
 * words now and every few seconds, and '' once the build no longer waits. `update(build)` with
 * each new state of the build starts and stops the polling.
 */
export function initQueueFollower(name, show) {
  let following = false;
  let generation = 0;
  let timer;
  const poll = async (mine) => {
    const line = await getJson(`/api/v1/builds/${encodeURIComponent(name)}/init-queue`).catch(
      () => undefined,
    );
    if (mine !== generation) return;
    if (line) show(initQueueText(line));
    timer = setTimeout(() => void poll(mine), INIT_QUEUE_POLL_MS);
  };
  return {
    update({ status, init_status: initStatus }) {
      const waits = status === 'initializing' && initStatus === 'todo';
      if (waits === following) return;
      following = waits;
      generation++;
      clearTimeout(timer);
      if (waits) void poll(generation);
      else show('');
    },
  };
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    return body.detail || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** POSTs an action; resolves on success, rejects with the API's message. */
export async function postAction(name, action) {
  const response = await fetch(`/api/v1/builds/${encodeURIComponent(name)}/${action}`, { method: 'POST' });
  if (!response.ok) throw new Error(await errorDetail(response));
}

/**
 * A build card: status, commit, age, links and action buttons. `update(build)` refreshes it in
 * place, so focus stays on a button across updates.
 */
export function buildCard(initial, { heading = 'h3', announce = () => {} } = {}) {
  let build = initial;
  let pending = null;
  let pendingTimer;
  const badge = h('span', { class: 'badge' });
  const nameLink = h('a', { class: 'build-name' });
  const commitLink = h('a', { class: 'commit' });
  const time = h('time', { class: 'age' });
  const liveLink = h('a', { class: 'open' }, 'Open');
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  // While the build waits for an init slot: its place in line (not announced: on a board, every
  // waiting card's place changes at each grant).
  const queue = h('p', { class: 'queue', hidden: true });
  const queueFollowing = initQueueFollower(initial.name, (text) => {
    queue.textContent = text;
    queue.hidden = text === '';
  });
  const buttons = {};
  for (const action of ['start', 'stop', 'reset']) {
    buttons[action] = h('button', {
      type: 'button',
      class: `action action-${action}`,
      'data-action': action,
    });
    buttons[action].addEventListener('click', () => run(action));
  }
  const titleId = `card-${initial.name}`;
  const card = h(
    'article',
    { class: 'card', 'data-build': initial.name, 'aria-labelledby': titleId },
    h(heading, { class: 'card-title', id: titleId }, badge, ' ', nameLink),
    h('p', { class: 'meta' }, commitLink, ' · ', time),
    queue,
    h('p', { class: 'links' }, liveLink),
    h(
      'div',
      { class: 'actions', role: 'group', 'aria-label': `Actions on ${initial.name}` },
      ...Object.values(buttons),
    ),
    error,
  );

  function render() {
    const status = build.status;
    card.dataset.status = status;
    card.classList.toggle('pending', Boolean(pending));
    badge.className = `badge status-${status}`;
    badge.textContent = STATUS_LABELS[status] || status;
    nameLink.textContent = build.name;
    nameLink.href = `/builds/${encodeURIComponent(build.name)}`;
    commitLink.href = build.repo_commit_link;
    commitLink.textContent = shortSha(build.commit_info.git_commit);
    commitLink.title = `Commit ${build.commit_info.git_commit} on GitHub`;
    time.dateTime = build.created;
    time.textContent = age(build.created);
    time.title = `Created ${formatTime(build.created)}`;
    liveLink.href = `/builds/${encodeURIComponent(build.name)}?live`;
    liveLink.textContent =
      status === 'started' ? 'Open' : status === 'stopped' ? 'Start and open' : 'Open when ready';
    liveLink.hidden = status === 'undeploying' || status === 'failed';
    queueFollowing.update(build);
    const applies = actionsFor(status);
    for (const [action, button] of Object.entries(buttons)) {
      const busy = pending === action;
      button.textContent = ACTION_LABELS[action][busy ? 1 : 0];
      button.disabled = Boolean(pending) || !applies[action];
      button.setAttribute('aria-busy', busy ? 'true' : 'false');
      button.setAttribute('aria-label', `${ACTION_LABELS[action][busy ? 1 : 0]} ${build.name}`);
    }
  }

  function settle() {
    clearTimeout(pendingTimer);
    pending = null;
    render();
  }

  async function run(action) {
    if (pending) return;
    pending = action;
    const before = build.status;
    error.hidden = true;
    render();
    try {
      await postAction(build.name, action);
      // Stay pending until the change shows in the build's events (or for 15 s at most).
      pendingTimer = setTimeout(settle, 15_000);
      card.dataset.pendingFrom = before;
    } catch (failure) {
      error.textContent = `Could not ${action} ${build.name}: ${failure.message}`;
      error.hidden = false;
      announce(error.textContent);
      settle();
    }
  }

  render();
  return {
    element: card,
    get build() {
      return build;
    },
    update(next) {
      const changed = next.status !== build.status || next.init_status !== build.init_status;
      build = next;
      if (pending && changed) settle();
      else render();
    },
    tick() {
      time.textContent = age(build.created);
    },
    gone() {
      settle();
      queueFollowing.update({ status: 'undeploying' });
      card.classList.add('gone');
      for (const button of Object.values(buttons)) button.disabled = true;
    },
  };
}

/**
 * Follows `/api/v1/build-events?<query>`. EventSource reconnects by itself after a dropped
 * connection; when the server refuses or closes for good, this opens a new one with backoff.
 * `onOpen(reconnected)` runs on every (re)connection: the server then sends the current builds.
 */
export function followBuildEvents(query, { onEvent, onOpen = () => {}, onState = () => {} }) {
  const url = `/api/v1/build-events?${new URLSearchParams(query)}`;
  let source;
  let delay = 500;
  let opened = false;
  let retry;
  const connect = () => {
    source = new EventSource(url);
    source.onopen = () => {
      delay = 500;
      onState('live');
      onOpen(opened);
      opened = true;
    };
    source.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch (error) {
        console.warn('bad build event', error);
      }
    };
    source.onerror = () => {
      onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(retry);
        retry = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15_000);
      }
    };
  };
  connect();
  window.addEventListener('pagehide', () => source.close());
  return { close: () => source.close() };
}

/** Shows the state of the events stream in `element` (an aria-live region). */
export function connectionIndicator(element) {
  return (state) => {
    element.dataset.state = state;
    element.textContent = state === 'live' ? 'Live' : 'Reconnecting…';
    element.title =
      state === 'live' ? 'Updates arrive as they happen' : 'The connection dropped; reconnecting';
  };
}
