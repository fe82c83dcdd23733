// The workflows the worker registers (its `workflowsPath` bundle entry point).
export { buildWorkflow } from './build';
export { initSlotsWorkflow } from './init-slots';
export { evictionWorkflow } from './eviction';
export { orphanSweepWorkflow } from './orphan-sweep';
export { githubReportsWorkflow } from './github-reports';
export { webhookRedeliveryWorkflow } from './webhook-redelivery';
