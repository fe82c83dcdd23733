import { describe, expectTypeOf, it } from 'vitest';
import { buildWorkflow, initSlotsWorkflow } from '../workflows';
import type { BuildWorkflow, InitSlotsWorkflow } from '../workflows/definitions';

// The API and the activities start workflows by the signatures in workflows/definitions.ts,
// without importing workflow code: those must stay the workflows' own (checked by tsc).

describe('workflow signatures in the definitions module', () => {
  it('are those of the workflows', () => {
    expectTypeOf(buildWorkflow).toEqualTypeOf<BuildWorkflow>();
    expectTypeOf(initSlotsWorkflow).toEqualTypeOf<InitSlotsWorkflow>();
  });
});
