// Types of mock-worker.mjs for the TypeScript tests that start it.
export interface MockWorkerOptions {
  port?: number;
  host?: string;
  apiKey?: string;
  staticDir?: string;
  stepDelayMs?: number;
  inlineImages?: boolean;
  keepAliveMs?: number;
  defaults?: Record<string, unknown>;
  /** Names `GET /v1/loras` lists (default: the three of tests/fixtures/loras/tiny-sd1). */
  loras?: string[];
}

export interface MockSubmission {
  id: string;
  body: Record<string, unknown>;
  maskWhiteFraction?: number;
}

export interface MockWorker {
  url: string;
  submissions: MockSubmission[];
  jobs: Map<string, { status: string }>;
  /** Stream connections opened so far. */
  stats: { streams: number };
  dropNextStream(afterFrames: number): void;
  close(): Promise<void>;
}

export function startMockWorker(options?: MockWorkerOptions): Promise<MockWorker>;
