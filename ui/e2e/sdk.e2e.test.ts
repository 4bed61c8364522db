/**
 * The SDK and the hooks' building blocks against the same target as the browser tests (the mock by default,
 * the real worker with SD_WORKER_BIN or SD_E2E_URL): the worker's actual answers, not hand-written ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, SdWorkerClient, bytesToBase64, type JobEvent } from '@sd-worker/sdk';
import { decodePng, encodePng } from '../mock-server/png.mjs';
import { startTarget, type Target } from './target';

let target: Target;
let client: SdWorkerClient;

beforeAll(async () => {
  target = await startTarget();
  client = new SdWorkerClient({ baseUrl: target.url });
});

afterAll(async () => {
  await target?.stop();
});

const base = { prompt: 'a small red boat', steps: 3, seed: 1234 };

async function pngBytes(blob: Blob): Promise<Buffer> {
  return Buffer.from(await blob.arrayBuffer());
}

/** The largest difference between two PNGs' pixels, per channel on the 0-255 scale. */
function largestPixelDifference(a: Buffer, b: Buffer): number {
  const left = decodePng(a);
  const right = decodePng(b);
  if (!left || !right) throw new Error('not a PNG the test can decode');
  expect([right.width, right.height]).toEqual([left.width, left.height]);
  let largest = 0;
  for (let i = 0; i < left.rgba.length; i++) largest = Math.max(largest, Math.abs(left.rgba[i]! - right.rgba[i]!));
  return largest;
}

describe('the SDK against the target worker', () => {
  it('reads /v1/info with defaults, samplers and limits', async () => {
    const info = await client.info();
    expect(info.samplers.length).toBeGreaterThan(0);
    expect(info.samplers).toContain(info.defaults.sampler);
    expect(info.defaults.width % info.size_multiple).toBe(0);
    expect(info.limits.max_steps).toBeGreaterThanOrEqual(info.defaults.steps);
  });

  it('runs a text-to-image job to PNG images that its seed reproduces', async () => {
    const events: JobEvent[] = [];
    const first = await client.run({ operation: 'image_generation', ...base, batch: 2 }, { onEvent: (e) => events.push(e) });
    if (first.status !== 'succeeded') throw new Error(`job ${first.status}`);
    expect(first.result.seeds).toEqual([1234, 1235]);
    expect(first.result.images).toHaveLength(2);
    expect(events.at(-1)?.type).toBe('complete');
    expect(events.some((e) => e.type === 'progress')).toBe(true);
    const job = await client.getJob(first.jobId);
    expect(job).toMatchObject({ id: first.jobId, status: 'succeeded', operation: 'image_generation' });
    const streamed = await pngBytes(await client.imageBlob(first.jobId, 1, first.result));
    const fetched = await pngBytes(await client.imageBlob(first.jobId, 1));
    expect(fetched.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(fetched.equals(streamed)).toBe(true); // (toEqual walks big arrays element by element: slow)
    // The second seed alone draws the batch's second image. Not byte for byte: each PNG's metadata names
    // its own job's seeds, and a batch of one rounds its float math a little differently (1/255 at most).
    const again = await client.run({ operation: 'image_generation', ...base, seed: 1235 });
    if (again.status !== 'succeeded') throw new Error(`job ${again.status}`);
    const alone = await pngBytes(await client.imageBlob(again.jobId, 0, again.result));
    expect(largestPixelDifference(alone, streamed)).toBeLessThanOrEqual(1);
    // ...and differs from the first seed's image, so the comparison above can fail.
    const firstImage = await pngBytes(await client.imageBlob(first.jobId, 0, first.result));
    expect(largestPixelDifference(alone, firstImage)).toBeGreaterThan(8);
  });

  it('runs img2img and inpainting with base64 inputs', async () => {
    const picture = bytesToBase64(new Uint8Array(encodePng(64, 64, new Uint8Array(64 * 64 * 4).fill(120))));
    const maskPixels = new Uint8Array(64 * 64 * 4);
    for (let i = 0; i < maskPixels.length; i += 4) maskPixels.fill(i < maskPixels.length / 2 ? 255 : 0, i, i + 4);
    const mask = bytesToBase64(new Uint8Array(encodePng(64, 64, maskPixels)));
    const transform = await client.run({ operation: 'image_transform', ...base, width: 64, height: 64, input_image: picture, strength: 0.5 });
    expect(transform.status).toBe('succeeded');
    const inpaint = await client.run({ operation: 'image_inpaint', ...base, width: 64, height: 64, init_image: picture, mask_image: mask });
    expect(inpaint.status).toBe('succeeded');
  });

  it('gets validation errors with their field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ steps: 0 }, 'steps'],
      [{ width: 65 }, 'width'],
      [{ prompt: '' }, 'prompt'],
      [{ sampler: 'no-such-sampler' }, 'sampler'],
      [{ strength: 0.5 }, 'strength'],
    ];
    for (const [change, field] of cases) {
      const error = await client.submit({ operation: 'image_generation', ...base, ...change } as never).catch((e: unknown) => e);
      expect(error, JSON.stringify(change)).toBeInstanceOf(ApiError);
      expect((error as ApiError).status, JSON.stringify(change)).toBe(422);
      expect((error as ApiError).field, JSON.stringify(change)).toBe(field);
    }
  });

  it('cancels a queued job and a running one', async () => {
    const running = await client.submit({ operation: 'image_generation', ...base, steps: 150 });
    const queued = await client.submit({ operation: 'image_generation', ...base, steps: 150 });
    const queuedOutcome = client.follow(queued.job_id);
    expect(await client.cancel(queued.job_id)).toBe(true);
    await expect(queuedOutcome).resolves.toMatchObject({ status: 'cancelled' });
    const events: JobEvent[] = [];
    const runningOutcome = client.follow(running.job_id, {
      onEvent: (event) => {
        events.push(event);
        if (event.type === 'progress' && events.filter((e) => e.type === 'progress').length === 1) void client.cancel(running.job_id);
      },
    });
    await expect(runningOutcome).resolves.toMatchObject({ status: 'cancelled' });
    expect(await client.cancel(running.job_id)).toBe(false);
  });
});
