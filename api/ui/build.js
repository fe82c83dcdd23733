/* global document, window, setTimeout, clearTimeout, fetch, navigator */
import {
  buildCard,
  connectionIndicator,
  followBuildEvents,
  formatTime,
  getJson,
  h,
  rowTitle,
  shortSha,
  STATUS_LABELS,
} from './common.js';

// A build's page: its card, every link (instance, mail catcher, logs, GitHub, Temporal) and a
// timeline read from its workflow history, all kept current by the build's events.

const name = decodeURIComponent(window.location.pathname.split('/')[2] || '');
const errorBox = document.getElementById('build-error');
const layoutBox = document.getElementById('build-layout');
const statusText = document.getElementById('build-status');
const timeline = document.getElementById('timeline');
let card;
let lastError = null;

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

function link(href, text, description, id) {
  return h(
    'li',
    {},
    h('a', { href, id, text }),
    description ? h('span', { class: 'muted', text: ` ${description}` }) : null,
  );
}

function render(build) {
  const commit = build.commit_info;
  const title = `${commit.repo} · ${rowTitle(commit)}`;
  document.title = `${build.name} · runboat`;
  document.getElementById('build-title').textContent = title;
  const crumbs = document.getElementById('breadcrumb');
  crumbs.replaceChildren(
    h('a', { href: '/', text: 'Repositories' }),
    ' / ',
    h('a', { href: `/builds?repo=${encodeURIComponent(commit.repo)}`, text: commit.repo }),
    ' / ',
    h('span', { text: build.name }),
  );
  if (!card) {
    card = buildCard(build, { heading: 'h3' });
    document.getElementById('card-slot').append(card.element);
  } else card.update(build);
  statusText.className = `badge status-${build.status}`;
  statusText.textContent = STATUS_LABELS[build.status] || build.status;

  const links = [
    link(
      build.status === 'started' ? build.deploy_link : `/builds/${encodeURIComponent(build.name)}?live`,
      build.status === 'started' ? 'Live instance' : 'Start and open the live instance',
      `(${build.deploy_link.replace(/^https?:\/\//, '')})`,
      'live-link',
    ),
    link(build.deploy_link_mailhog, 'Mail catcher', '(MailHog)', 'mail-link'),
    link(
      `/api/v1/builds/${encodeURIComponent(build.name)}/init-log`,
      'Initialization log',
      '',
      'init-log-link',
    ),
    link(
      `/api/v1/builds/${encodeURIComponent(build.name)}/log`,
      'Log',
      '(of the running instance)',
      'log-link',
    ),
    link(build.repo_commit_link, `Commit ${shortSha(commit.git_commit)} on GitHub`, '', 'commit-link'),
  ];
  if (build.repo_pr_link)
    links.push(link(build.repo_pr_link, `Pull request #${commit.pr} on GitHub`, '', 'pr-link'));
  links.push(
    link(build.repo_target_branch_link, `Branch ${commit.target_branch} on GitHub`, '', 'branch-link'),
  );
  links.push(link(build.workflow_link, 'Workflow in the Temporal Web UI', '(full history)', 'temporal-link'));
  document.getElementById('links').replaceChildren(...links);
  // Opening the live instance is a visit (it postpones the idle stop); `?live` counts its own.
  if (build.status === 'started') {
    document.getElementById('live-link').addEventListener('click', () => {
      navigator.sendBeacon(`/api/v1/builds/${encodeURIComponent(build.name)}/visit`);
    });
  }
  document.getElementById('force-box').hidden = build.status !== 'undeploying';

  const rows = [
    ['Name', build.name],
    ['Repository', commit.repo],
    ['Target branch', commit.target_branch],
    ['Pull request', commit.pr ? `#${commit.pr}` : '—'],
    ['Commit', h('code', { text: commit.git_commit, class: 'sha' })],
    ['Initialization', build.init_status || '—'],
    ['Created', h('time', { datetime: build.created, text: formatTime(build.created) })],
    [
      'Last started or stopped',
      build.last_scaled
        ? h('time', { datetime: build.last_scaled, text: formatTime(build.last_scaled) })
        : '—',
    ],
  ];
  if (lastError) rows.push(['Last error', h('span', { class: 'error-text', text: lastError })]);
  document
    .getElementById('details')
    .replaceChildren(...rows.flatMap(([term, value]) => [h('dt', { text: term }), h('dd', {}, value)]));
  layoutBox.hidden = false;
}

// Admins only: the browser asks for the admin credentials when the API answers 401.
document.getElementById('force-undeploy').addEventListener('click', async () => {
  const result = document.getElementById('force-result');
  const reason = window.prompt(
    'Why force the undeploy? (kept in the build history)',
    'cleanup job keeps failing',
  );
  if (reason === null) return;
  const query = `force=true&reason=${encodeURIComponent(reason)}`;
  const response = await fetch(`/api/v1/builds/${encodeURIComponent(name)}?${query}`, { method: 'DELETE' });
  if (response.ok) result.textContent = 'Forced: the build is being deleted without its cleanup job.';
  else {
    const body = await response.json().catch(() => ({}));
    result.textContent = `Refused (${response.status}): ${body.detail || response.statusText}`;
  }
});

// A failed init's reason is at the end of its log: shown here, so that nobody has to open it.
const initFailure = document.getElementById('init-failure');
let initFailureShown = false;
async function showInitFailure(build) {
  if (build.init_status !== 'failed') {
    // Reset: a later failure is read again.
    initFailure.hidden = true;
    initFailureShown = false;
    return;
  }
  if (initFailureShown) return;
  initFailureShown = true;
  const note = document.getElementById('init-failure-note');
  const log = document.getElementById('init-failure-log');
  const logLink = h('a', {
    href: `/api/v1/builds/${encodeURIComponent(build.name)}/init-log`,
    text: 'open it with its colours',
  });
  try {
    const { text, cut } = await getJson(`/builds/${encodeURIComponent(build.name)}/init-log-tail.json`);
    note.replaceChildren(
      cut ? 'The end of the initialization log; ' : 'The initialization log; ',
      logLink,
      '.',
    );
    log.textContent = text;
    log.hidden = false;
  } catch (error) {
    // No log kept (a cluster that lost it): nothing to show.
    if (error.status === 404) return;
    note.replaceChildren(`The initialization log could not be read (${error.message}); `, logLink, '.');
    log.hidden = true;
  }
  initFailure.hidden = false;
  log.scrollTop = log.scrollHeight;
}

let timelineTimer;
function refreshTimeline() {
  clearTimeout(timelineTimer);
  timelineTimer = setTimeout(async () => {
    try {
      const { entries } = await getJson(`/builds/${encodeURIComponent(name)}/timeline.json`);
      timeline.replaceChildren(
        ...entries
          .slice()
          .reverse()
          .map((entry) =>
            h(
              'li',
              { class: `timeline-${entry.kind}${entry.status ? ` status-${entry.status}` : ''}` },
              h('time', { datetime: entry.time, text: formatTime(entry.time) }),
              h('span', { class: 'timeline-text', text: entry.text }),
            ),
          ),
      );
    } catch (error) {
      timeline.replaceChildren(
        h('li', { class: 'error-text', text: `Timeline unavailable: ${error.message}` }),
      );
    } finally {
      timeline.setAttribute('aria-busy', 'false');
    }
  }, 300);
}

async function loadDetails() {
  try {
    const build = await getJson(`/api/v1/builds/${encodeURIComponent(name)}`);
    lastError = build.last_error || null;
    render(build);
    void showInitFailure(build);
  } catch (error) {
    if (error.status === 404) {
      document.getElementById('build-title').textContent = name;
      showError(`There is no build named ${name}: it may have been undeployed.`);
    } else showError(`Could not load the build: ${error.message}`);
    return false;
  }
  return true;
}

if (await loadDetails()) {
  refreshTimeline();
  followBuildEvents(
    { build_name: name },
    {
      onEvent({ event, build }) {
        if (event === 'del') {
          card?.gone();
          document.getElementById('build-gone').hidden = false;
          refreshTimeline();
          return;
        }
        const changed =
          !card || card.build.status !== build.status || card.build.init_status !== build.init_status;
        render(build);
        void showInitFailure(build);
        if (changed) {
          refreshTimeline();
          if (build.status === 'failed') void loadDetails();
        }
      },
      onState: connectionIndicator(document.getElementById('connection')),
    },
  );
}
