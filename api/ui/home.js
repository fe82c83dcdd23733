/* global document, setTimeout, clearTimeout */
import { connectionIndicator, followBuildEvents, getJson, h } from './common.js';

// Home and /status: the repositories with builds, and the counts against their limits.

const dashboard = document.getElementById('dashboard');
const repos = document.getElementById('repos');
const errorBox = document.getElementById('home-error');

const GAUGES = [
  ['started', 'max_started', 'Started', 'running instances'],
  ['deployed', 'max_deployed', 'Deployed', 'builds kept'],
  ['initializing', 'max_initializing', 'Initializing', 'databases being created'],
];
const COUNTS = [
  ['to_initialize', 'Waiting to initialize'],
  ['stopped', 'Stopped'],
  ['failed', 'Failed'],
  ['undeploying', 'Undeploying'],
];

function renderStatus(status) {
  const items = [];
  for (const [key, max, label, what] of GAUGES) {
    const value = status[key];
    const limit = status[max];
    const meterId = `meter-${key}`;
    items.push(
      h(
        'div',
        { class: `stat gauge stat-${key}` },
        h('dt', { id: `${meterId}-label`, text: label }),
        h(
          'dd',
          {},
          h('span', { class: 'stat-value', text: `${value}` }),
          h('span', { class: 'stat-limit', text: ` / ${limit}` }),
          h('meter', {
            min: 0,
            max: limit,
            value,
            high: Math.max(0, limit - 0.5),
            optimum: 0,
            'aria-labelledby': `${meterId}-label`,
            title: `${value} of at most ${limit} ${what}`,
          }),
        ),
      ),
    );
  }
  for (const [key, label] of COUNTS) {
    items.push(
      h(
        'div',
        { class: `stat stat-${key}` },
        h('dt', { text: label }),
        h('dd', {}, h('span', { class: 'stat-value', text: `${status[key]}` })),
      ),
    );
  }
  dashboard.replaceChildren(...items);
  dashboard.setAttribute('aria-busy', 'false');
}

function renderRepos(list) {
  repos.replaceChildren(
    ...(list.length
      ? list.map((repo) =>
          h(
            'li',
            {},
            h('a', {
              class: 'repo-link',
              href: `/builds?repo=${encodeURIComponent(repo.name)}`,
              text: repo.name,
            }),
            ' ',
            h('a', { class: 'muted small', href: repo.link, text: 'GitHub' }),
          ),
        )
      : [
          h('li', {
            class: 'empty',
            text: 'No builds yet: they appear when GitHub reports a push or a pull request.',
          }),
        ]),
  );
  repos.setAttribute('aria-busy', 'false');
}

async function refresh() {
  try {
    const [status, list] = await Promise.all([getJson('/api/v1/status'), getJson('/api/v1/repos')]);
    renderStatus(status);
    renderRepos(list);
    errorBox.hidden = true;
  } catch (error) {
    errorBox.textContent = `Could not reach runboat's API: ${error.message}`;
    errorBox.hidden = false;
  }
}

let timer;
const soon = () => {
  clearTimeout(timer);
  timer = setTimeout(refresh, 300);
};

await refresh();
// Only the changes: the counts and repos come from /status and /repos, and the builds first
// sent by a stream without a filter would be every build (7,000 at OCA) at each page load.
followBuildEvents(
  { changes_only: 'true' },
  { onEvent: soon, onOpen: soon, onState: connectionIndicator(document.getElementById('connection')) },
);
