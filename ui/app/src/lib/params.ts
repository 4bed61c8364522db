/** The form's parameters, their defaults (from /v1/info where the worker gives them), and the request
 * fields they become. Values stay strings while edited so that the worker, not the form, judges them. */
import type { GenerationParams, WorkerInfo } from '@sd-worker/sdk';

export interface FormParams {
  prompt: string;
  negative_prompt: string;
  sampler: string;
  steps: string;
  guidance_scale: string;
  seed: string;
  /** Keep the seed between runs; otherwise every run rolls a new one. */
  seedLocked: boolean;
  width: string;
  height: string;
  batch: string;
  /** Image to image: how much of the picture is replaced. */
  strength: string;
  /** Inpainting keeps its own strength: 1.0 by default, as the API and the CLI default it. */
  inpaint_strength: string;
}

/** The form field holding the strength of a mode. */
export type StrengthField = 'strength' | 'inpaint_strength';

export function strengthFieldOf(mode: 'img2img' | 'inpaint'): StrengthField {
  return mode === 'inpaint' ? 'inpaint_strength' : 'strength';
}

export const FALLBACK_DEFAULTS = { steps: 20, guidance_scale: 7.5, width: 512, height: 512, sampler: 'euler', strength: 0.8, inpaint_strength: 1 };

export function defaultsFrom(info: WorkerInfo | null) {
  return { ...FALLBACK_DEFAULTS, ...(info?.defaults ?? {}), sampler: info?.defaults?.sampler ?? info?.samplers[0] ?? FALLBACK_DEFAULTS.sampler };
}

export function initialParams(info: WorkerInfo | null): FormParams {
  const d = defaultsFrom(info);
  return {
    prompt: '',
    negative_prompt: '',
    sampler: d.sampler,
    steps: String(d.steps),
    guidance_scale: String(d.guidance_scale),
    seed: String(randomSeed()),
    seedLocked: false,
    width: String(d.width),
    height: String(d.height),
    batch: '1',
    strength: String(d.strength),
    inpaint_strength: String(d.inpaint_strength),
  };
}

export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

/** A number field: empty means "let the worker choose". */
function numberField(value: string): number | undefined {
  const trimmed = value.trim();
  return trimmed === '' ? undefined : Number(trimmed);
}

/** The request fields shared by all operations. */
export function toGenerationParams(form: FormParams): GenerationParams {
  const params: GenerationParams = { prompt: form.prompt };
  if (form.negative_prompt.trim()) params.negative_prompt = form.negative_prompt;
  const numbers = { steps: form.steps, guidance_scale: form.guidance_scale, seed: form.seed, width: form.width, height: form.height, batch: form.batch } as const;
  for (const [key, raw] of Object.entries(numbers) as [keyof typeof numbers, string][]) {
    const value = numberField(raw);
    if (value !== undefined) params[key] = value;
  }
  if (form.sampler) params.sampler = form.sampler;
  return params;
}

export function strengthOf(form: FormParams, field: StrengthField): number | undefined {
  return numberField(form[field]);
}

/** Size presets around the model's native size, each side a multiple of 8. */
export function sizePresets(info: WorkerInfo | null): { label: string; width: number; height: number }[] {
  const base = defaultsFrom(info).width;
  const round8 = (n: number) => Math.max(8, Math.round(n / 8) * 8);
  const presets = [
    { label: 'Square', w: 1, h: 1 },
    { label: 'Landscape 3:2', w: 1.5, h: 1 },
    { label: 'Portrait 2:3', w: 1, h: 1.5 },
    { label: 'Wide 16:9', w: 16 / 9, h: 1 },
    { label: 'Tall 9:16', w: 1, h: 16 / 9 },
  ];
  return presets.map((p) => {
    const width = round8(base * p.w);
    const height = round8(base * p.h);
    return { label: `${p.label} (${width}×${height})`, width, height };
  });
}

/** Maps the worker's error `field` to the form control that shows it. */
export function formFieldOf(apiField: string | undefined): string | undefined {
  if (!apiField) return undefined;
  if (apiField === 'num_images') return 'batch';
  if (apiField === 'input_image' || apiField === 'init_image') return 'image';
  if (apiField === 'mask_image') return 'mask';
  return apiField;
}
