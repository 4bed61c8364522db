import { act, renderHook, waitFor } from '@testing-library/react';
import type { ReactNode } from 'react';
import { afterEach, describe, expect, it } from 'vitest';
import { SdWorkerClient, type ApiError } from '@sd-worker/sdk';
import { startMockWorker, type MockWorker } from '../../../mock-server/mock-worker.mjs';
import { SdWorkerProvider, useInpainting, useImageToImage, useJob, useTextToImage } from '../src/index.js';

let mock: MockWorker | undefined;
afterEach(async () => {
  await mock?.close();
  mock = undefined;
});

async function setup(stepDelayMs = 10) {
  mock = await startMockWorker({ stepDelayMs });
  const client = new SdWorkerClient({ baseUrl: mock.url });
  const wrapper = ({ children }: { children: ReactNode }) => <SdWorkerProvider client={client}>{children}</SdWorkerProvider>;
  return { client, wrapper, mock };
}

const params = { prompt: 'a lighthouse', steps: 5, width: 64, height: 64, seed: 3 };
// A white 2x2 PNG (from mock-server/png.mjs), so as a mask it repaints everything.
const whitePng =
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAADklEQVR4nGP4DwYMEAoAU7oL9ZisIGcAAAAASUVORK5CYII=';

describe('useTextToImage', () => {
  it('goes idle -> submitting -> running with progress and preview -> succeeded with the result', async () => {
    const { wrapper } = await setup(25);
    const { result } = renderHook(() => useTextToImage(), { wrapper });
    expect(result.current.phase).toBe('idle');
    const phases = new Set<string>();
    let sawPreview = false;
    let sawProgress = false;
    let done: Promise<unknown> = Promise.resolve();
    act(() => {
      done = result.current.submit(params);
    });
    await waitFor(() => {
      phases.add(result.current.phase);
      if (result.current.preview?.startsWith('data:image/png;base64,')) sawPreview = true;
      if ((result.current.progress?.step ?? 0) > 0 && result.current.phase === 'running') sawProgress = true;
      expect(result.current.phase).toBe('succeeded');
    }, { interval: 5, timeout: 3000 });
    await done;
    expect(phases.has('running')).toBe(true);
    expect(sawProgress).toBe(true);
    expect(sawPreview).toBe(true);
    expect(result.current.result?.seeds).toEqual([3]);
    expect(result.current.progress?.percent).toBe(100);
    expect(result.current.busy).toBe(false);
    expect(result.current.jobId).toMatch(/[0-9a-f-]{36}/);
  });

  it('puts a validation error, with its field, in state', async () => {
    const { wrapper } = await setup();
    const { result } = renderHook(() => useTextToImage(), { wrapper });
    act(() => void result.current.submit({ ...params, width: 63 }));
    await waitFor(() => expect(result.current.phase).toBe('failed'));
    expect((result.current.error as ApiError).field).toBe('width');
    expect((result.current.error as ApiError).status).toBe(422);
  });

  it('cancels a running job', async () => {
    const { wrapper } = await setup(30);
    const { result } = renderHook(() => useTextToImage(), { wrapper });
    let finished: Promise<unknown> = Promise.resolve();
    act(() => {
      finished = result.current.submit({ ...params, steps: 100 });
    });
    await waitFor(() => expect(result.current.phase).toBe('running'));
    await act(() => result.current.cancel());
    await waitFor(() => expect(result.current.phase).toBe('cancelled'));
    await expect(finished).resolves.toMatchObject({ status: 'cancelled' });
    expect(result.current.busy).toBe(false);
  });

  it('cancels a job whose submit is still in flight as soon as its id is known', async () => {
    const { wrapper } = await setup(30);
    const { result } = renderHook(() => useTextToImage(), { wrapper });
    let finished: Promise<unknown> = Promise.resolve();
    act(() => {
      finished = result.current.submit({ ...params, steps: 100 });
      void result.current.cancel();
    });
    await waitFor(() => expect(result.current.phase).toBe('cancelled'));
    await expect(finished).resolves.toMatchObject({ status: 'cancelled' });
  });
});

describe('useImageToImage and useInpainting', () => {
  it('send their images as base64 with the right operation', async () => {
    const { wrapper, mock: worker } = await setup(1);
    const img2img = renderHook(() => useImageToImage(), { wrapper });
    const blob = new Blob([Uint8Array.from(atob(whitePng), (c) => c.charCodeAt(0))], { type: 'image/png' });
    act(() => void img2img.result.current.submit({ ...params, input_image: blob, strength: 0.5 }));
    await waitFor(() => expect(img2img.result.current.error?.message ?? img2img.result.current.phase).toBe('succeeded'));
    const inpaint = renderHook(() => useInpainting(), { wrapper });
    act(() => void inpaint.result.current.submit({ ...params, init_image: `data:image/png;base64,${whitePng}`, mask_image: blob }));
    await waitFor(() => expect(inpaint.result.current.phase).toBe('succeeded'));
    expect(worker.submissions.map((s) => s.body.operation)).toEqual(['image_transform', 'image_inpaint']);
    expect(worker.submissions[0]?.body.input_image).toBe(whitePng);
    expect(worker.submissions[1]?.body.init_image).toBe(whitePng);
    expect(worker.submissions[1]?.maskWhiteFraction).toBe(1);
  });
});

describe('useJob', () => {
  it('follows a job submitted elsewhere, including one that already finished', async () => {
    const { wrapper, client } = await setup(5);
    const submitted = await client.submit({ operation: 'image_generation', ...params });
    const live = renderHook(() => useJob(submitted.job_id), { wrapper });
    await waitFor(() => expect(live.result.current.phase).toBe('succeeded'));
    expect(live.result.current.result?.images).toHaveLength(1);
    const late = renderHook(() => useJob(submitted.job_id), { wrapper });
    await waitFor(() => expect(late.result.current.phase).toBe('succeeded'));
    const idle = renderHook(() => useJob(null), { wrapper });
    expect(idle.result.current.phase).toBe('idle');
  });

  it('reports an unknown job as failed with a 404', async () => {
    const { wrapper } = await setup();
    const { result } = renderHook(() => useJob('nope'), { wrapper });
    await waitFor(() => expect(result.current.phase).toBe('failed'));
    expect((result.current.error as ApiError).status).toBe(404);
  });
});
