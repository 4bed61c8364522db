// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { decodePng, encodePng } from '../../../mock-server/png.mjs';
import { formatEta } from './format';
import { formFieldOf, initialParams, sizePresets, toGenerationParams } from './params';
import { a1111Parameters, withPngText } from './png-text';
import type { WorkerInfo } from '@sd-worker/sdk';

const info = {
  model: 'tiny',
  samplers: ['ddim', 'euler'],
  defaults: { width: 64, height: 64, steps: 4, guidance_scale: 5, sampler: 'ddim' },
} as unknown as WorkerInfo;

describe('params', () => {
  it('start from the worker defaults', () => {
    const params = initialParams(info);
    expect(params).toMatchObject({ steps: '4', guidance_scale: '5', width: '64', height: '64', sampler: 'ddim', batch: '1' });
  });

  it('become request fields, leaving empty ones to the worker and passing bad ones through', () => {
    const form = { ...initialParams(info), prompt: 'p', seed: '', steps: '500', negative_prompt: '  ' };
    const request = toGenerationParams(form);
    expect(request).toEqual({ prompt: 'p', steps: 500, guidance_scale: 5, width: 64, height: 64, batch: 1, sampler: 'ddim' });
  });

  it('map the worker’s error fields to form controls', () => {
    expect(formFieldOf('num_images')).toBe('batch');
    expect(formFieldOf('input_image')).toBe('image');
    expect(formFieldOf('init_image')).toBe('image');
    expect(formFieldOf('mask_image')).toBe('mask');
    expect(formFieldOf('steps')).toBe('steps');
    expect(formFieldOf(undefined)).toBeUndefined();
  });

  it('offer size presets around the native size, in multiples of 8', () => {
    const presets = sizePresets(info);
    expect(presets[0]).toMatchObject({ width: 64, height: 64 });
    expect(presets.every((p) => p.width % 8 === 0 && p.height % 8 === 0)).toBe(true);
  });
});

describe('withPngText', () => {
  it('adds tEXt chunks a PNG reader finds, with valid CRCs, keeping the pixels', async () => {
    const pixels = new Uint8Array(4 * 4 * 4).fill(200);
    const png = new Blob([new Uint8Array(encodePng(4, 4, pixels))], { type: 'image/png' });
    const params = { prompt: 'a cat', negative_prompt: 'dogs', steps: 20, sampler: 'euler', guidance_scale: 7.5, width: 4, height: 4 };
    const tagged = await withPngText(png, { parameters: a1111Parameters(params, 42, 'tiny'), 'sd-worker': '{"seed":42}' });
    const bytes = Buffer.from(await tagged.arrayBuffer());
    const decoded = decodePng(bytes)!;
    expect(decoded.text.parameters).toBe('a cat\nNegative prompt: dogs\nSteps: 20, Sampler: euler, CFG scale: 7.5, Seed: 42, Size: 4x4, Model: tiny');
    expect(decoded.text['sd-worker']).toBe('{"seed":42}');
    expect(decoded.rgba[0]).toBe(200);
    // Every chunk's CRC must hold, or strict readers drop the file.
    const { crc32 } = await import('node:zlib');
    for (let offset = 8; offset < bytes.length; ) {
      const length = bytes.readUInt32BE(offset);
      const crc = bytes.readUInt32BE(offset + 8 + length);
      expect(crc32(bytes.subarray(offset + 4, offset + 8 + length))).toBe(crc);
      offset += 12 + length;
    }
  });

  it('leaves anything that is not a PNG alone', async () => {
    const notPng = new Blob(['hello']);
    expect(await withPngText(notPng, { a: 'b' })).toBe(notPng);
  });
});

describe('formatEta', () => {
  it('reads as a person would say it', () => {
    expect(formatEta(2400)).toBe('about 2 s left');
    expect(formatEta(83_000)).toBe('about 1 min 23 s left');
    expect(formatEta(null)).toBe('');
  });
});
