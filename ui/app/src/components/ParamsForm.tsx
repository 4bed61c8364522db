/** Prompt (with the worker's LoRAs to add to it), negative prompt and the advanced controls (sampler, steps, guidance, seed, size, batch,
 * strength). Each control shows the worker's error for its field right under it. */
import { useEffect, useId, useState, type ReactNode } from 'react';
import type { WorkerInfo } from '@sd-worker/sdk';
import { appendLoraTag } from '../lib/lora';
import { LoraPicker } from './LoraPicker';
import { randomSeed, sizePresets, type FormParams, type StrengthField } from '../lib/params';
import { samplerLabel } from '../lib/samplers';

export interface FieldError {
  field: string;
  message: string;
}

interface Props {
  params: FormParams;
  onChange: (next: FormParams) => void;
  info: WorkerInfo | null;
  /** The strength slider's field, or null where the mode has none (text to image). */
  strengthField: StrengthField | null;
  fieldError: FieldError | null;
  /** Ctrl/Cmd+Enter in a prompt box. */
  onSubmitShortcut: () => void;
}

export function ParamsForm({ params, onChange, info, strengthField, fieldError, onSubmitShortcut }: Props) {
  const set = <K extends keyof FormParams>(key: K, value: FormParams[K]) => onChange({ ...params, [key]: value });
  const presets = sizePresets(info);
  const presetValue = presets.findIndex((p) => String(p.width) === params.width && String(p.height) === params.height);
  const errorFor = (field: string) => (fieldError?.field === field ? fieldError.message : undefined);
  const onPromptKey = (event: React.KeyboardEvent) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      onSubmitShortcut();
    }
  };
  const samplers = info?.samplers ?? [params.sampler];
  const [advancedOpen, setAdvancedOpen] = useState(false);
  const advancedError = fieldError !== null && !['prompt', 'negative_prompt', 'strength', 'image', 'mask'].includes(fieldError.field);
  useEffect(() => {
    if (advancedError) setAdvancedOpen(true); // an error inside must be visible
  }, [advancedError, fieldError]);

  return (
    <div className="params">
      <Field id="prompt" label="Prompt" error={errorFor('prompt')}>
        {(props) => (
          <textarea
            {...props}
            rows={3}
            value={params.prompt}
            placeholder="A lighthouse on a cliff at dusk, oil painting"
            onChange={(e) => set('prompt', e.target.value)}
            onKeyDown={onPromptKey}
          />
        )}
      </Field>
      <LoraPicker info={info} onPick={(name) => set('prompt', appendLoraTag(params.prompt, name))} />
      <Field id="negative_prompt" label="Negative prompt" error={errorFor('negative_prompt')}>
        {(props) => (
          <textarea
            {...props}
            rows={2}
            value={params.negative_prompt}
            placeholder="blurry, low quality"
            onChange={(e) => set('negative_prompt', e.target.value)}
            onKeyDown={onPromptKey}
          />
        )}
      </Field>
      {strengthField && (
        <Field id="strength" label={`Strength: ${params[strengthField]}`} error={errorFor('strength')} hint="0 keeps the picture, 1 replaces it">
          {(props) => (
            <input {...props} type="range" min={0} max={1} step={0.05} value={params[strengthField]} onChange={(e) => set(strengthField, e.target.value)} />
          )}
        </Field>
      )}
      <details className="advanced" open={advancedOpen} onToggle={(e) => setAdvancedOpen(e.currentTarget.open)}>
        <summary>Advanced</summary>
        <div className="grid2">
          <Field id="sampler" label="Sampler" error={errorFor('sampler')}>
            {(props) => (
              <select {...props} value={params.sampler} onChange={(e) => set('sampler', e.target.value)}>
                {samplers.map((name) => (
                  <option key={name} value={name}>
                    {samplerLabel(name)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field id="steps" label="Steps" error={errorFor('steps')}>
            {(props) => <input {...props} type="number" inputMode="numeric" value={params.steps} onChange={(e) => set('steps', e.target.value)} />}
          </Field>
          <Field id="guidance_scale" label="Guidance (CFG)" error={errorFor('guidance_scale')}>
            {(props) => (
              <input {...props} type="number" inputMode="decimal" step={0.5} value={params.guidance_scale} onChange={(e) => set('guidance_scale', e.target.value)} />
            )}
          </Field>
          <Field id="batch" label="Batch" error={errorFor('batch')}>
            {(props) => <input {...props} type="number" inputMode="numeric" value={params.batch} onChange={(e) => set('batch', e.target.value)} />}
          </Field>
        </div>
        <Field id="seed" label="Seed" error={errorFor('seed')}>
          {(props) => (
            <div className="seed-row">
              <input {...props} type="number" inputMode="numeric" value={params.seed} onChange={(e) => set('seed', e.target.value)} />
              <button type="button" onClick={() => set('seed', String(randomSeed()))} title="Pick a new random seed">
                Random
              </button>
              <label className="inline">
                <input type="checkbox" checked={params.seedLocked} onChange={(e) => set('seedLocked', e.target.checked)} /> Lock
              </label>
            </div>
          )}
        </Field>
        <Field id="size_preset" label="Size">
          {(props) => (
            <select
              {...props}
              value={presetValue}
              onChange={(e) => {
                const preset = presets[Number(e.target.value)];
                if (preset) onChange({ ...params, width: String(preset.width), height: String(preset.height) });
              }}
            >
              {presetValue === -1 && <option value={-1}>Custom</option>}
              {presets.map((preset, index) => (
                <option key={preset.label} value={index}>
                  {preset.label}
                </option>
              ))}
            </select>
          )}
        </Field>
        <div className="grid2">
          <Field id="width" label="Width" error={errorFor('width')}>
            {(props) => <input {...props} type="number" inputMode="numeric" step={8} value={params.width} onChange={(e) => set('width', e.target.value)} />}
          </Field>
          <Field id="height" label="Height" error={errorFor('height')}>
            {(props) => <input {...props} type="number" inputMode="numeric" step={8} value={params.height} onChange={(e) => set('height', e.target.value)} />}
          </Field>
        </div>
      </details>
    </div>
  );
}

interface ControlProps {
  id: string;
  name: string;
  'aria-invalid'?: boolean;
  'aria-describedby'?: string;
}

/** A labelled control with its hint and error wired up for screen readers. */
function Field({ id, label, error, hint, children }: { id: string; label: string; error?: string | undefined; hint?: string; children: (props: ControlProps) => ReactNode }) {
  const uid = useId();
  const controlId = `field-${id}`;
  const describedBy = [hint ? `${uid}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  const props: ControlProps = { id: controlId, name: id };
  if (error) props['aria-invalid'] = true;
  if (describedBy) props['aria-describedby'] = describedBy;
  return (
    <div className={`field${error ? ' has-error' : ''}`}>
      <label htmlFor={controlId}>{label}</label>
      {children(props)}
      {hint && (
        <small id={`${uid}-hint`} className="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}
