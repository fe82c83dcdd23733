/* global document, window, fetch, setTimeout */
import { followBuildEvents, initQueueFollower, STATUS_LABELS } from './common.js';

// `/builds/{name}?live` while the build is not up yet: follows its events and goes to the
// instance as soon as it is started (starting it again if it stopped meanwhile).

const section = document.querySelector('section.live');
const name = section.dataset.build;
const deployLink = section.dataset.deployLink;
// Served on the build's own host (wake on visit): reload the address asked for, which the
// ingress sends to the build once it has a ready pod; a moment's delay lets the ingress notice.
const reload = section.dataset.reload === 'true';
const RELOAD_DELAY_MS = 1500;
const status = document.getElementById('live-status');
const message = document.getElementById('live-message');
const spinner = document.getElementById('live-spinner');
const failed = document.getElementById('live-failed');
const servedFailed = !failed.hidden;
// Served without starting the build (the request did not look like a person's visit), the
// page starts it when the button is pressed; otherwise whenever it finds the build stopped.
const startButton = document.getElementById('live-start');
let startWanted = !startButton;
let startSent = false;

function start() {
  if (startSent) return;
  startSent = true;
  void fetch(`/api/v1/builds/${encodeURIComponent(name)}/start`, { method: 'POST' });
}

const WAIT_NOTE = 'This page takes you to it as soon as it is up.';
/** A build waiting for an init slot: where it is in line, in words. */
let placeInLine = '';
/** What a build coming up is at: the page served says "Starting the build" of every one. */
function sayWhereItIs(build) {
  if (build.status === 'starting') message.textContent = `Starting the build. ${WAIT_NOTE}`;
  if (build.status !== 'initializing') return;
  const step =
    build.init_status === 'started' ? 'Initializing the build.' : placeInLine || 'Preparing the build.';
  message.textContent = `${step} ${WAIT_NOTE}`;
}
const initQueue = initQueueFollower(name, (text) => {
  placeInLine = text;
  if (text) message.textContent = `${text} ${WAIT_NOTE}`;
});

startButton?.addEventListener('click', () => {
  startWanted = true;
  startButton.hidden = true;
  spinner.hidden = false;
  message.textContent = `Starting the build. ${WAIT_NOTE}`;
  start();
});

const stream = followBuildEvents(
  { build_name: name },
  {
    onEvent({ event, build }) {
      if (event === 'del') {
        initQueue.update({ status: 'undeploying' });
        stream.close();
        spinner.hidden = true;
        message.textContent = 'This build has been undeployed.';
        return;
      }
      status.className = `badge status-${build.status}`;
      status.textContent = STATUS_LABELS[build.status] || build.status;
      sayWhereItIs(build);
      initQueue.update(build);
      if (build.status === 'started') {
        stream.close();
        message.textContent = 'The build is up: opening it…';
        if (reload) setTimeout(() => window.location.reload(), RELOAD_DELAY_MS);
        else window.location.replace(deployLink);
      } else if (build.status === 'stopped' && startWanted) {
        start();
      } else if (build.status === 'failed') {
        spinner.hidden = true;
        failed.hidden = false;
        message.textContent = 'This build failed to initialize.';
        // It failed while this page waited: the page served now says why (the end of its log).
        if (!servedFailed) {
          stream.close();
          window.location.reload();
        }
      } else if (build.status === 'undeploying') {
        spinner.hidden = true;
        message.textContent = 'This build is being undeployed; it cannot be started.';
      }
    },
  },
);
