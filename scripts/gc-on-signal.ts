// Loaded into the API process by `npm run fuzz` only, with --expose-gc: SIGUSR2 runs a full
// garbage collection, so that the RSS measured after the run is what the API holds, not what
// it has not collected yet. The service itself never loads this.
process.on('SIGUSR2', () => (globalThis as { gc?: () => void }).gc?.());
