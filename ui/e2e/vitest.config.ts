import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

// Browser tests: one file at a time, one test after another (they share a browser profile on purpose).
export default defineConfig({
  resolve: {
    alias: {
      '@sd-worker/sdk': here('../packages/sdk/src/index.ts'),
      '@sd-worker/react': here('../packages/react/src/index.ts'),
    },
  },
  test: {
    include: ['e2e/**/*.e2e.test.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 120_000,
  },
});
