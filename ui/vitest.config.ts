import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

// Unit tests of every workspace package; the packages are read from source, no build needed first.
export default defineConfig({
  resolve: {
    alias: {
      '@sd-worker/sdk': here('./packages/sdk/src/index.ts'),
      '@sd-worker/react': here('./packages/react/src/index.ts'),
    },
  },
  esbuild: { jsx: 'automatic' },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'sdk', include: ['packages/sdk/test/**/*.test.ts'], environment: 'node' },
      },
      {
        extends: true,
        test: { name: 'react', include: ['packages/react/test/**/*.test.{ts,tsx}'], environment: 'jsdom' },
      },
      {
        extends: true,
        test: { name: 'app', include: ['app/src/**/*.test.{ts,tsx}'], environment: 'jsdom' },
      },
    ],
  },
});
