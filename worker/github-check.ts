import { loadConfig } from '../common/config';
import { GitHub } from '../common/github';
import { checkGitHubAccess } from '../common/github-check';

// `npm run github-check`, or `node dist/worker/github-check.js` in the worker's image: with the
// worker's configuration, who the service is on GitHub and whether it may do what the
// configuration asks (statuses or check runs, deployments, the trigger endpoints, webhook
// redelivery; an App's events and each installation's accepted permissions). Exits 1 when
// something is missing, 2 when GitHub cannot be asked.

if (require.main === module) {
  const config = loadConfig();
  new GitHub(config)
    .identity()
    .then((identity) => {
      const { lines, problems } = checkGitHubAccess(config, identity);
      console.log(lines.join('\n'));
      process.exit(problems ? 1 : 0);
    })
    .catch((error: unknown) => {
      console.error(`GitHub could not be asked: ${String(error)}`);
      process.exit(2);
    });
}
