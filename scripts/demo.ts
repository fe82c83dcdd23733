import { randomBytes } from 'node:crypto';
import { webhookVerifier } from '../api/webhooks';

// `npm run demo -- [URL]`: sends GitHub-shaped, signed webhooks to a running service: a push
// to a branch, a pull request, and a push to a fail-* branch whose init fails in the simulated
// cluster. Uses the demo secret of `npm start` unless RUNBOAT_GITHUB_WEBHOOK_SECRET is set.

const url = process.argv[2] ?? 'http://localhost:8000';
const secret = process.env.RUNBOAT_GITHUB_WEBHOOK_SECRET ?? 'demo-secret';
const repo = process.env.DEMO_REPO ?? 'oca/demo-addons';
const sha = () => randomBytes(20).toString('hex');
const repository = { id: 1, name: repo.split('/')[1], full_name: repo, private: false };

const deliveries: Array<[string, object]> = [
  ['push', { ref: 'refs/heads/16.0', before: '0'.repeat(40), after: sha(), deleted: false, repository }],
  [
    'pull_request',
    {
      action: 'opened',
      number: 1,
      pull_request: { number: 1, head: { ref: 'feature', sha: sha() }, base: { ref: '16.0' } },
      repository,
    },
  ],
  ['push', { ref: 'refs/heads/fail-demo', before: '0'.repeat(40), after: sha(), deleted: false, repository }],
];

async function main(): Promise<void> {
  const webhooks = await webhookVerifier(secret);
  for (const [event, payload] of deliveries) {
    const body = JSON.stringify(payload);
    const response = await fetch(`${url}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': event,
        'x-github-delivery': crypto.randomUUID(),
        'x-hub-signature-256': await webhooks.sign(body),
      },
      body,
    });
    console.log(`${event}: ${response.status} ${await response.text()}`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
