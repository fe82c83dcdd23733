import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode, Runtime, type WorkflowBundleOption } from '@temporalio/worker';
import { logger } from '../common/logger';

// Bundles the workflow code once, when the image is built (`node dist/worker/bundle.js`), so
// that a worker starts from the bundle instead of running webpack at every start (seconds of
// CPU and a few hundred MiB that stay in the worker's heap).

/** Where the worker looks for the pre-built bundle: beside the compiled folders. */
export const WORKFLOW_BUNDLE_PATH = path.resolve(__dirname, '..', 'workflow-bundle.js');

export const workflowsPath = path.resolve(__dirname, '..', 'workflows');

/**
 * The workflow code a worker runs, loaded once for both its start-up check and its polling:
 * the image's pre-built bundle when compiled code finds it, or else the sources bundled now
 * (code run from sources, with tsx, always runs the sources it was started from).
 */
export async function loadWorkflowBundle(): Promise<WorkflowBundleOption> {
  if (__filename.endsWith('.js') && existsSync(WORKFLOW_BUNDLE_PATH)) {
    logger.info({ workflowBundle: WORKFLOW_BUNDLE_PATH }, 'using the pre-built workflow bundle');
    return { codePath: WORKFLOW_BUNDLE_PATH };
  }
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: Runtime.instance().logger });
  return { code };
}

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
