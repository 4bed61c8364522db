/**
 * What the browser tests run against, chosen by environment variables:
 * - `SD_E2E_URL=http://host:port`: a worker that is already running (serving the UI at /);
 * - `SD_WORKER_BIN=/path/to/sd-worker`: start the real binary, `serve --model $SD_WORKER_MODEL`
 *   (default tests/fixtures/models/tiny-sd1) on a free port, with `--lora-dir $SD_WORKER_LORA_DIR` when that
 *   is set; relative paths are from the repository root;
 * - neither: the mock worker of mock-server/, serving the built app from app/dist.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMockWorker, type MockWorker } from '../mock-server/mock-worker.mjs';

export interface Target {
  url: string;
  kind: 'mock' | 'binary' | 'external';
  /** The mock itself, to look at what it received; null for a real worker. */
  mock: MockWorker | null;
  stop: () => Promise<void>;
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const appDist = fileURLToPath(new URL('../app/dist', import.meta.url));

export async function startTarget(options: { apiKey?: string } = {}): Promise<Target> {
  const external = process.env.SD_E2E_URL;
  if (external && !options.apiKey) return { url: external.replace(/\/$/, ''), kind: 'external', mock: null, stop: async () => undefined };
  const binary = process.env.SD_WORKER_BIN;
  if (binary) return startBinary(binary, options.apiKey);
  if (!existsSync(`${appDist}/index.html`)) throw new Error('app/dist is missing: run `npm run build` first');
  const mock = await startMockWorker({ staticDir: appDist, stepDelayMs: 80, apiKey: options.apiKey, defaults: { width: 256, height: 256, steps: 12 } });
  return { url: mock.url, kind: 'mock', mock, stop: () => mock.close() };
}

async function startBinary(binary: string, apiKey: string | undefined): Promise<Target> {
  const port = await freePort();
  const model = process.env.SD_WORKER_MODEL ?? 'tests/fixtures/models/tiny-sd1';
  const args = ['serve', '--model', model, '--host', '127.0.0.1', '--port', String(port)];
  if (apiKey) args.push('--api-key', apiKey);
  const loraDir = process.env.SD_WORKER_LORA_DIR;
  if (loraDir) args.push('--lora-dir', loraDir);
  const child: ChildProcess = spawn(resolve(repoRoot, binary), args, { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${binary} exited with ${child.exitCode} before it was ready`);
    try {
      if ((await fetch(`${url}/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${binary} was not ready within 120 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    url,
    kind: 'binary',
    mock: null,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
