import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

// The app is served by `sd-worker serve` at `/`, so asset URLs are absolute; it talks to the same origin.
export default defineConfig({
  base: '/',
  resolve: {
    alias: {
      '@sd-worker/sdk': here('../packages/sdk/src/index.ts'),
      '@sd-worker/react': here('../packages/react/src/index.ts'),
    },
  },
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // One JS and one CSS file keep the embedded bundle small and the Rust side simple.
    cssCodeSplit: false,
    rollupOptions: { output: { manualChunks: undefined } },
  },
  server: {
    proxy: { '/v1': 'http://127.0.0.1:8600' },
  },
});
