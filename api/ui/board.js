/* global document, window, setInterval, URL, URLSearchParams */
import {
  buildCard,
  connectionIndicator,
  followBuildEvents,
  getJson,
  h,
  matchesSearch,
  rowTitle,
  STATUS_LABELS,
} from './common.js';

// The builds board: a row per branch and per pull request, newest first, a card per build,
// kept current by build events.

const params = new URLSearchParams(window.location.search);
const repo = (params.get('repo') || '').toLowerCase();
const board = document.getElementById('board');
const empty = document.getElementById('board-empty');
const search = document.getElementById('search');
const count = document.getElementById('search-count');
const announcer = document.getElementById('announcer');
const boardError = document.getElementById('board-error');
const cards = new Map(); // build name -> card
const rows = new Map(); // row key -> { element, list }

const announce = (text) => {
  announcer.textContent = text;
};

if (repo) {
  document.title = `${repo} builds · runboat`;
  document.getElementById('board-title').textContent = `${repo}`;
  document
    .getElementById('board-links')
    .append('Builds of ', h('a', { href: `https://github.com/${repo}`, text: `${repo} on GitHub` }), '.');
} else {
  document.getElementById('board-links').textContent = 'Builds of every repository.';
}
search.value = params.get('q') || '';

const rowKey = (build) => {
  const { repo: r, target_branch: branch, pr } = build.commit_info;
  return `${r}\u0000${branch}\u0000${pr ?? ''}`;
};

function rowFor(build) {
  const key = rowKey(build);
  let row = rows.get(key);
  if (!row) {
    const commit = build.commit_info;
    const headingId = `row-${rows.size}-${Math.random().toString(36).slice(2, 8)}`;
    const title = h('h2', { class: 'row-title', id: headingId });
    if (!repo) title.append(h('span', { class: 'row-repo', text: commit.repo }), ' ');
    if (commit.pr) {
      title.append(
        h('a', {
          href: build.repo_pr_link || `https://github.com/${commit.repo}/pull/${commit.pr}`,
          text: `PR #${commit.pr}`,
        }),
        ' ',
        h('span', { class: 'muted', text: '→ ' }),
        h('a', { href: build.repo_target_branch_link, text: commit.target_branch }),
      );
    } else {
      title.append(h('a', { href: build.repo_target_branch_link, text: commit.target_branch }));
    }
    const list = h('ol', { class: 'cards', 'aria-labelledby': headingId });
    const element = h(
      'section',
      { class: 'row', 'aria-labelledby': headingId, 'data-row': rowTitle(commit) },
      title,
      list,
    );
    row = { element, list };
    rows.set(key, row);
  }
  return row;
}

/** Newest first: cards by creation, rows by their newest card. */
function layout() {
  for (const row of rows.values()) {
    const items = [...row.list.children].sort((a, b) => newest(b) - newest(a));
    row.list.append(...items);
    row.newest = Math.max(0, ...items.map(newest));
  }
  const ordered = [...rows.values()]
    .filter((row) => row.list.children.length)
    .sort((a, b) => b.newest - a.newest);
  board.replaceChildren(...ordered.map((row) => row.element));
  applySearch();
}

function newest(item) {
  return Date.parse(cards.get(item.dataset.build)?.build.created || '') || 0;
}

function upsert(build) {
  const existing = cards.get(build.name);
  if (existing) {
    const before = existing.build.status;
    existing.update(build);
    if (before !== build.status) {
      announce(`${build.name} is now ${STATUS_LABELS[build.status] || build.status}`);
      applySearch();
    }
    return;
  }
  const card = buildCard(build, { announce });
  cards.set(build.name, card);
  const item = h('li', { 'data-build': build.name }, card.element);
  rowFor(build).list.append(item);
  scheduleLayout();
}

function remove(name) {
  const card = cards.get(name);
  if (!card) return;
  cards.delete(name);
  card.gone();
  const item = card.element.parentElement;
  const list = item?.parentElement;
  item?.remove();
  for (const [key, row] of rows) if (row.list === list && !list.children.length) rows.delete(key);
  announce(`${name} was undeployed`);
  scheduleLayout();
}

let layoutQueued = false;
function scheduleLayout() {
  if (layoutQueued) return;
  layoutQueued = true;
  window.requestAnimationFrame(() => {
    layoutQueued = false;
    layout();
  });
}

function applySearch() {
  const query = search.value;
  let shown = 0;
  for (const card of cards.values()) {
    const visible = matchesSearch(card.build, query);
    card.element.parentElement.hidden = !visible;
    if (visible) shown += 1;
  }
  for (const row of rows.values()) {
    row.element.hidden = ![...row.list.children].some((item) => !item.hidden);
  }
  const total = cards.size;
  count.textContent = query.trim()
    ? `${shown} of ${total} builds`
    : `${total} build${total === 1 ? '' : 's'}`;
  empty.hidden = shown > 0;
  empty.textContent = total
    ? 'No build matches this filter.'
    : `No builds${repo ? ` of ${repo}` : ''} yet. They appear here as soon as GitHub reports a push or a pull request.`;
}

search.addEventListener('input', () => {
  const url = new URL(window.location.href);
  if (search.value) url.searchParams.set('q', search.value);
  else url.searchParams.delete('q');
  window.history.replaceState(null, '', url);
  applySearch();
});
document.getElementById('search-form').addEventListener('submit', (event) => event.preventDefault());

/** After a reconnection, builds deleted meanwhile are found by listing. */
async function reconcile() {
  try {
    const listed = await getJson(`/api/v1/builds${repo ? `?repo=${encodeURIComponent(repo)}` : ''}`);
    const names = new Set(listed.map((build) => build.name));
    for (const name of [...cards.keys()]) if (!names.has(name)) remove(name);
    for (const build of listed) upsert(build);
    boardError.hidden = true;
  } catch (error) {
    boardError.textContent = `Could not list builds: ${error.message}`;
    boardError.hidden = false;
  }
}

followBuildEvents(repo ? { repo } : {}, {
  onEvent({ event, build }) {
    if (event === 'del') remove(build.name);
    else upsert(build);
  },
  onOpen(reconnected) {
    board.setAttribute('aria-busy', 'false');
    if (reconnected) void reconcile();
    applySearch();
  },
  onState: connectionIndicator(document.getElementById('connection')),
});

setInterval(() => {
  for (const card of cards.values()) card.tick();
}, 30_000);
