import { loadConfig } from '../common/config';
import { GitHub } from '../common/github';
import { checkGitHubAccess, checkWebhooks, readWebhooks } from '../common/github-check';

// `npm run github-check`, or `node dist/worker/github-check.js` in the worker's image: with the
// worker's configuration, who the service is on GitHub and whether it may do what the
// configuration asks (statuses or check runs, deployments, the trigger endpoints, webhook
// redelivery; an App's events and each installation's accepted permissions), and whether its
// webhooks (the App's, those named for redelivery) send to it, signed as it expects. Exits 1
// when something is missing, 2 when GitHub cannot be asked.

if (require.main === module) {
  const config = loadConfig();
  const github = new GitHub(config);
  const run = async () => {
    const access = checkGitHubAccess(config, await github.identity());
    const webhooks = checkWebhooks(config, await readWebhooks(config, github));
    console.log([...access.lines, ...webhooks.lines].join('\n'));
    return access.problems + webhooks.problems;
  };
  run()
    .then((problems) => process.exit(problems ? 1 : 0))
    .catch((error: unknown) => {
      console.error(`GitHub could not be asked: ${String(error)}`);
      process.exit(2);
    });
}
