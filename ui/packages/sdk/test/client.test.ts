import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockWorker, type MockWorker } from '../../../mock-server/mock-worker.mjs';
import { ApiError, NetworkError, SdWorkerClient, type JobEvent } from '../src/index.js';

const quickReconnect = { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20 };
const generation = { operation: 'image_generation', prompt: 'a red fox', steps: 4, width: 64, height: 64, seed: 11 } as const;

let mock: MockWorker | undefined;
const rawServers: ReturnType<typeof createServer>[] = [];

afterEach(async () => {
  await mock?.close();
  mock = undefined;
  for (const server of rawServers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function rawServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  rawServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('SdWorkerClient against the mock worker', () => {
  it('reads /v1/info', async () => {
    mock = await startMockWorker();
    const info = await new SdWorkerClient({ baseUrl: mock.url }).info();
    expect(info.samplers).toContain('euler');
    expect(info.defaults?.steps).toBe(20);
  });

  it('lists the LoRAs of /v1/loras', async () => {
    mock = await startMockWorker({ loras: ['kohya_attn', 'style one'] });
    const client = new SdWorkerClient({ baseUrl: mock.url });
    expect(await client.listLoras()).toEqual([{ name: 'kohya_attn' }, { name: 'style one' }]);
    await mock.close();
    mock = await startMockWorker({ loras: [] });
    expect(await new SdWorkerClient({ baseUrl: mock.url }).listLoras()).toEqual([]);
  });

  it('submits a job and follows it through progress and previews to its images', async () => {
    mock = await startMockWorker({ stepDelayMs: 40 });
    const client = new SdWorkerClient({ baseUrl: mock.url });
    const events: JobEvent[] = [];
    let jobId = '';
    const outcome = await client.run(generation, { onEvent: (e) => events.push(e), onSubmitted: (s) => (jobId = s.job_id) });
    expect(outcome.status).toBe('succeeded');
    const types = events.map((e) => e.type);
    expect(['queued', 'started']).toContain(types[0]); // the mock may start it before we subscribe
    expect(types).toContain('started');
    // A subscriber that connects after the job started gets the latest progress, then every later one.
    const progress = events.filter((e) => e.type === 'progress').map((e) => (e as { step: number }).step);
    expect(progress.at(-1)).toBe(4);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(types.filter((t) => t === 'preview').length).toBeGreaterThanOrEqual(2);
    expect(types.at(-1)).toBe('complete');
    if (outcome.status !== 'succeeded') throw new Error('unreachable');
    expect(outcome.jobId).toBe(jobId);
    expect(outcome.result.seeds).toEqual([11]);
    const png = await client.imageBlob(jobId, 0, outcome.result);
    const bytes = new Uint8Array(await png.arrayBuffer());
    expect([...bytes.subarray(1, 4)].map((b) => String.fromCharCode(b)).join('')).toBe('PNG');
    expect((await client.getJob(jobId)).status).toBe('succeeded');
  });

  it('decodes inline base64 images without another request', async () => {
    mock = await startMockWorker({ stepDelayMs: 1, inlineImages: true });
    const client = new SdWorkerClient({ baseUrl: mock.url });
    const outcome = await client.run({ ...generation, batch: 2 });
    if (outcome.status !== 'succeeded') throw new Error(`job ${outcome.status}`);
    expect(outcome.result.images[0]?.startsWith('iVBOR')).toBe(true);
    const blob = await client.imageBlob('not-a-job', 1, outcome.result);
    expect(blob.type).toBe('image/png');
    expect(outcome.result.seeds).toEqual([11, 12]);
  });

  it('reports a validation error with its field', async () => {
    mock = await startMockWorker();
    const client = new SdWorkerClient({ baseUrl: mock.url });
    const error = await client.submit({ ...generation, steps: 500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 422, field: 'steps' });
    expect((error as ApiError).message).toMatch(/steps/);
  });

  it('sends the bearer token, and reports 401 without it', async () => {
    mock = await startMockWorker({ apiKey: 'sekrit' });
    const anonymous = new SdWorkerClient({ baseUrl: mock.url });
    const error = await anonymous.info().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).isUnauthorized).toBe(true);
    let key: string | null = null;
    const client = new SdWorkerClient({ baseUrl: mock.url, apiKey: () => key });
    await expect(client.info()).rejects.toMatchObject({ status: 401 });
    key = 'sekrit';
    await expect(client.info()).resolves.toMatchObject({ model: 'mock-tiny-sd1' });
    const outcome = await client.run({ ...generation, steps: 1 });
    expect(outcome.status).toBe('succeeded');
  });

  it('cancels a running job, which then ends cancelled; a finished job answers false', async () => {
    mock = await startMockWorker({ stepDelayMs: 30 });
    const client = new SdWorkerClient({ baseUrl: mock.url });
    const submitted = await client.submit({ ...generation, steps: 100 });
    const events: JobEvent[] = [];
    const outcome = client.follow(submitted.job_id, {
      onEvent: (event) => {
        events.push(event);
        if (event.type === 'progress' && event.step === 2) void client.cancel(submitted.job_id);
      },
    });
    await expect(outcome).resolves.toEqual({ status: 'cancelled', jobId: submitted.job_id });
    expect(events.filter((e) => e.type === 'progress').length).toBeLessThan(10);
    await expect(client.cancel(submitted.job_id)).resolves.toBe(false);
    await expect(client.cancel('no-such-job')).rejects.toMatchObject({ status: 404 });
  });

  it('cancels a queued job at once', async () => {
    mock = await startMockWorker({ stepDelayMs: 20 });
    const client = new SdWorkerClient({ baseUrl: mock.url });
    const first = await client.submit({ ...generation, steps: 50 });
    const second = await client.submit(generation);
    const events: JobEvent[] = [];
    const followed = client.follow(second.job_id, { onEvent: (e) => events.push(e) });
    await expect(client.cancel(second.job_id)).resolves.toBe(true);
    await expect(followed).resolves.toMatchObject({ status: 'cancelled' });
    expect(events[0]).toEqual({ type: 'queued', position: 1 });
    await client.cancel(first.job_id);
  });

  it('reconnects when the stream drops mid-job and still gets the result', async () => {
    mock = await startMockWorker({ stepDelayMs: 10 });
    const client = new SdWorkerClient({ baseUrl: mock.url, reconnect: quickReconnect });
    mock.dropNextStream(3);
    const events: JobEvent[] = [];
    const outcome = await client.run({ ...generation, steps: 8 }, { onEvent: (e) => events.push(e) });
    expect(outcome.status).toBe('succeeded');
    expect(mock.submissions).toHaveLength(1);
    expect(mock.stats.streams).toBe(2);
    expect(events.at(-1)?.type).toBe('complete');
  });

  it('stops following, without cancelling the job, when the caller aborts', async () => {
    mock = await startMockWorker({ stepDelayMs: 20 });
    const client = new SdWorkerClient({ baseUrl: mock.url });
    const controller = new AbortController();
    const submitted = await client.submit({ ...generation, steps: 10 });
    const followed = client.follow(submitted.job_id, {
      signal: controller.signal,
      onEvent: (e) => e.type === 'progress' && controller.abort(new Error('user left')),
    });
    await expect(followed).rejects.toThrow('user left');
    const outcome = await client.follow(submitted.job_id);
    expect(outcome.status).toBe('succeeded');
  });
});

describe('SdWorkerClient against hand-written servers', () => {
  it('reads events sent as unnamed messages and a stream that ends without [DONE]', async () => {
    const url = await rawServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: {"type":"started"}\n\n');
      res.end('data: {"type":"complete","images":["iVBORw0KGgo="],"seeds":[3]}\n\n');
    });
    const outcome = await new SdWorkerClient({ baseUrl: url }).follow('j1');
    expect(outcome).toMatchObject({ status: 'succeeded', result: { seeds: [3] } });
  });

  it('turns an error event into a failed outcome', async () => {
    const url = await rawServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.end('event: error\ndata: {"code":"out_of_memory","message":"the device ran out of memory"}\n\ndata: [DONE]\n\n');
    });
    const outcome = await new SdWorkerClient({ baseUrl: url }).follow('j1');
    expect(outcome.status).toBe('failed');
    if (outcome.status === 'failed') {
      expect(outcome.error.code).toBe('out_of_memory');
      expect(outcome.error.message).toBe('the device ran out of memory');
    }
  });

  it('sends Last-Event-ID when it reconnects', async () => {
    const seen: (string | undefined)[] = [];
    const url = await rawServer((req, res) => {
      seen.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.end(`id: ${seen.length}\nevent: progress\ndata: {"step":1,"total":2}\n\n`);
    });
    const client = new SdWorkerClient({ baseUrl: url, reconnect: { ...quickReconnect, maxAttempts: 2 } });
    // Each connection delivers one event and drops.
    const events: JobEvent[] = [];
    const run = (async () => {
      for await (const event of client.events('j1')) {
        events.push(event);
        if (events.length === 3) break;
      }
    })();
    await run;
    expect(seen).toEqual([undefined, '1', '2']);
  });

  it('gives up with a NetworkError when the worker cannot be reached', async () => {
    const url = await rawServer((req) => req.socket.destroy());
    const client = new SdWorkerClient({ baseUrl: url, reconnect: quickReconnect });
    await expect(client.follow('j1')).rejects.toBeInstanceOf(NetworkError);
    await expect(client.info()).rejects.toBeInstanceOf(NetworkError);
  });

  it('reconnects after a stream goes silent past the idle timeout', async () => {
    let connections = 0;
    const url = await rawServer((_req, res) => {
      connections += 1;
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      if (connections === 1) {
        res.write('event: started\ndata: {}\n\n'); // then nothing: a half-open connection
      } else {
        res.end('event: cancelled\ndata: {}\n\ndata: [DONE]\n\n');
      }
    });
    const client = new SdWorkerClient({ baseUrl: url, reconnect: quickReconnect, idleTimeoutMs: 100 });
    await expect(client.follow('j1')).resolves.toMatchObject({ status: 'cancelled' });
    expect(connections).toBe(2);
  });

  it('reads Retry-After and a non-JSON error body', async () => {
    const url = await rawServer((req, res) => {
      if (req.method === 'POST') {
        res.writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '7' });
        res.end('{"error":{"code":"queue_full","message":"the queue is full","field":null}}');
      } else {
        res.writeHead(502);
        res.end('bad gateway');
      }
    });
    const client = new SdWorkerClient({ baseUrl: url });
    await expect(client.submit(generation)).rejects.toMatchObject({ status: 429, code: 'queue_full', retryAfter: 7, field: undefined });
    await expect(client.info()).rejects.toMatchObject({ status: 502, code: 'http_502', message: 'bad gateway' });
  });

  it('does not retry a stream the worker refuses (404)', async () => {
    let requests = 0;
    const url = await rawServer((_req, res) => {
      requests += 1;
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end('{"error":{"code":"not_found","message":"no job j1"}}');
    });
    await expect(new SdWorkerClient({ baseUrl: url, reconnect: quickReconnect }).follow('j1')).rejects.toMatchObject({ status: 404 });
    expect(requests).toBe(1);
  });
});
