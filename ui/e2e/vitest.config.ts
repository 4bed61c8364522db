import { defineConfig } from 'vitest/config';

// Browser tests: one file at a time, one test after another (they share a browser profile on purpose).
export default defineConfig({
  test: {
    include: ['e2e/**/*.e2e.test.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 120_000,
  },
});
