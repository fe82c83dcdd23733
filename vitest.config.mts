import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: integration files share one control plane and one Temporal server.
    maxWorkers: 2,
    // The service's own JSON logs: warnings and errors only, so that test output stays readable.
    env: { LOG_LEVEL: 'warn' },
  },
});
