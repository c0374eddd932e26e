import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file in its own process: tests hold real locks and spawn
    // children, and a crash must not take the other files with it.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores on CI: at most two files at once, so timing bounds stay generous.
    maxWorkers: 2,
  },
});
