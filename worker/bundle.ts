import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

// Bundles the workflow code once, when the image is built (`node dist/worker/bundle.js`), so
// that a worker starts from the bundle instead of running webpack at every start (seconds of
// CPU and a few hundred MiB that stay in the worker's heap).

/** Where the worker looks for the pre-built bundle: beside the compiled folders. */
export const WORKFLOW_BUNDLE_PATH = path.resolve(__dirname, '..', 'workflow-bundle.js');

export const workflowsPath = path.resolve(__dirname, '..', 'workflows');

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({ workflowsPath });
  writeFileSync(WORKFLOW_BUNDLE_PATH, code);
  console.log(`workflow bundle written to ${WORKFLOW_BUNDLE_PATH} (${Math.round(code.length / 1024)} KiB)`);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
