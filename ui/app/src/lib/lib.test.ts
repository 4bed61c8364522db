// @vitest-environment node
import { describe, expect, it } from 'vitest';
import { formatEta } from './format';
import { appendLoraTag } from './lora';
import { modelDisplayName } from './model-name';
import { formFieldOf, initialParams, sizePresets, strengthFieldOf, strengthOf, toGenerationParams } from './params';
import { samplerLabel } from './samplers';
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

describe('strength', () => {
  it('defaults to 0.8 for image to image and 1.0 for inpainting, each mode keeping its own', () => {
    const form = { ...initialParams(info), strength: '0.5' };
    expect(strengthOf(initialParams(info), strengthFieldOf('img2img'))).toBe(0.8);
    expect(strengthOf(initialParams(info), strengthFieldOf('inpaint'))).toBe(1);
    expect(strengthOf(form, strengthFieldOf('inpaint'))).toBe(1);
  });
});

describe('samplerLabel', () => {
  it('shows the names people know, and unknown ids as they are', () => {
    expect(samplerLabel('dpmpp_2m_karras')).toBe('DPM++ 2M Karras');
    expect(samplerLabel('euler_a')).toBe('Euler a');
    expect(samplerLabel('pndm')).toBe('PLMS');
    expect(samplerLabel('something_new')).toBe('something_new');
  });
});

describe('modelDisplayName', () => {
  it('never shows a filesystem path', () => {
    expect(modelDisplayName('/srv/models/dreamshaper_8.safetensors')).toBe('dreamshaper_8');
    expect(modelDisplayName('/work/main/tests/fixtures/models/tiny-sd1/')).toBe('tiny-sd1');
    expect(modelDisplayName('tests/fixtures/models/tiny-sd1')).toBe('tiny-sd1');
    expect(modelDisplayName('./sdxl')).toBe('sdxl');
    expect(modelDisplayName('C:\\models\\v1-5.ckpt')).toBe('v1-5');
  });

  it('keeps a hub id and a bare name as they are', () => {
    expect(modelDisplayName('stabilityai/sd-turbo')).toBe('stabilityai/sd-turbo');
    expect(modelDisplayName('tiny')).toBe('tiny');
  });
});

describe('formatEta', () => {
  it('reads as a person would say it', () => {
    expect(formatEta(2400)).toBe('about 2 s left');
    expect(formatEta(83_000)).toBe('about 1 min 23 s left');
    expect(formatEta(null)).toBe('');
  });
});

describe('appendLoraTag', () => {
  it('adds <lora:NAME:1> at the end, separated by one space', () => {
    expect(appendLoraTag('a red fox', 'kohya_attn')).toBe('a red fox <lora:kohya_attn:1>');
    expect(appendLoraTag('a red fox ', 'kohya_attn')).toBe('a red fox <lora:kohya_attn:1>');
    expect(appendLoraTag('', 'kohya_attn')).toBe('<lora:kohya_attn:1>');
    expect(appendLoraTag('x <lora:a:1>', 'b', 0.5)).toBe('x <lora:a:1> <lora:b:0.5>');
  });
});
