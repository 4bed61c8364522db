/**
 * The working area of all three modes: the form (plus picture and mask for img2img/inpaint), the job panel,
 * and saving finished images to the gallery. One job per mode; switching tabs keeps each mode's job.
 */
import { useEffect, useRef, useState } from 'react';
import { useImageToImage, useInpainting, useJob, useTextToImage } from '@sd-worker/react';
import { ApiError, type JobOutcome, type Operation, type WorkerInfo } from '@sd-worker/sdk';
import { client } from '../lib/api';
import { putGalleryItem, type GalleryItem } from '../lib/gallery-db';
import type { PickedImage } from '../lib/images';
import { readPendingJob, writePendingJob, type PendingJob } from '../lib/pending';
import { formFieldOf, randomSeed, strengthFieldOf, strengthOf, toGenerationParams, type FormParams } from '../lib/params';
import type { Mode } from '../lib/route';
import { ImagePicker } from './ImagePicker';
import { JobPanel, type ShownResult } from './JobPanel';
import { MaskEditor, type MaskEditorHandle } from './MaskEditor';
import { ParamsForm, type FieldError } from './ParamsForm';

interface Props {
  mode: Mode;
  info: WorkerInfo | null;
  params: FormParams;
  onParamsChange: (params: FormParams) => void;
  input: PickedImage | null;
  onPickFile: (file: File) => void;
  onClearInput: () => void;
  onSaved: (items: GalleryItem[]) => void;
  onUnauthorized: () => void;
}

const OPERATION: Record<Mode, Operation> = { txt2img: 'image_generation', img2img: 'image_transform', inpaint: 'image_inpaint' };
const SUBMIT_LABEL: Record<Mode, string> = { txt2img: 'Generate', img2img: 'Transform', inpaint: 'Inpaint' };

export function Studio({ mode, info, params, onParamsChange, input, onPickFile, onClearInput, onSaved, onUnauthorized }: Props) {
  const jobs = { txt2img: useTextToImage(), img2img: useImageToImage(), inpaint: useInpainting() };
  // A job this tab started before a reload: followed by id until it ends, then saved like any other.
  const [resumedJob, setResumedJob] = useState<PendingJob | null>(() => readPendingJob());
  const resumed = useJob(resumedJob?.jobId ?? null);
  const job = resumedJob?.mode === mode && jobs[mode].phase === 'idle' ? resumed : jobs[mode];
  const pendingRequest = useRef<{ mode: Mode; request: Record<string, unknown> } | null>(null);
  const mask = useRef<MaskEditorHandle>(null);
  const [localError, setLocalError] = useState<FieldError | null>(null);
  const [results, setResults] = useState<Record<Mode, ShownResult[]>>({ txt2img: [], img2img: [], inpaint: [] });

  const apiError = job.error instanceof ApiError && job.phase === 'failed' ? job.error : null;
  const apiField = formFieldOf(apiError?.field);
  const fieldError: FieldError | null = localError ?? (apiError && apiField ? { field: apiField, message: apiError.message } : null);

  useEffect(() => {
    if (apiError?.isUnauthorized) onUnauthorized();
  }, [apiError, onUnauthorized]);

  // Take the keyboard to the field at fault so the message is read out and the fix is one keystroke away.
  useEffect(() => {
    if (!fieldError) return;
    const target = document.getElementById(`field-${fieldError.field}`) ?? document.getElementById(`${fieldError.field}-error`);
    target?.focus();
  }, [fieldError]);

  useEffect(() => setLocalError(null), [mode]);

  // Remember the running job across reloads.
  const runningIds = [jobs.txt2img, jobs.img2img, jobs.inpaint].map((j) => (j.busy ? j.jobId : null)).join();
  useEffect(() => {
    const wanted = pendingRequest.current;
    if (!wanted) return;
    const running = jobs[wanted.mode];
    if (running.busy && running.jobId) {
      writePendingJob({ mode: wanted.mode, jobId: running.jobId, operation: OPERATION[wanted.mode], request: wanted.request });
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps -- runningIds says when any of them changed
  }, [runningIds]);

  const resumedSaved = useRef(false);
  useEffect(() => {
    if (!resumedJob || resumedSaved.current || resumed.busy || resumed.phase === 'idle' || resumed.phase === 'submitting') return;
    resumedSaved.current = true;
    writePendingJob(null);
    if (resumed.error instanceof ApiError && resumed.error.status === 404) {
      setResumedJob(null); // the worker has forgotten it (past its result TTL): nothing to show
    } else if (resumed.phase === 'succeeded' && resumed.result) {
      const outcome: JobOutcome = { status: 'succeeded', jobId: resumedJob.jobId, result: resumed.result };
      void save(outcome, resumedJob.operation, resumedJob.request, resumedJob.mode).catch(() => undefined);
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps -- runs when the resumed job ends
  }, [resumed.phase, resumed.busy]);

  const save = async (outcome: JobOutcome, operation: Operation, request: Record<string, unknown>, forMode: Mode) => {
    if (outcome.status !== 'succeeded') return;
    const saved: GalleryItem[] = [];
    const shown: ShownResult[] = [];
    for (let index = 0; index < outcome.result.images.length; index++) {
      const png = await client.imageBlob(outcome.jobId, index, outcome.result);
      const bitmap = await createImageBitmap(png);
      const item: GalleryItem = {
        id: `${outcome.jobId}-${index}`,
        createdAt: Date.now() + index,
        operation,
        params: request,
        seed: outcome.result.seeds[index] ?? null,
        width: bitmap.width,
        height: bitmap.height,
        model: info?.model ?? null,
        png,
      };
      bitmap.close();
      await putGalleryItem(item);
      saved.push(item);
      shown.push({ url: URL.createObjectURL(png), seed: item.seed });
    }
    setResults((previous) => {
      previous[forMode].forEach((r) => URL.revokeObjectURL(r.url));
      return { ...previous, [forMode]: shown };
    });
    onSaved(saved);
  };

  const submit = async () => {
    if (job.busy) return;
    setLocalError(null);
    setResults((previous) => {
      previous[mode].forEach((r) => URL.revokeObjectURL(r.url));
      return { ...previous, [mode]: [] };
    });
    let form = params;
    if (!form.seedLocked) {
      form = { ...form, seed: String(randomSeed()) };
      onParamsChange(form);
    }
    const base = toGenerationParams(form);
    const strength = mode === 'txt2img' ? undefined : strengthOf(form, strengthFieldOf(mode));
    const request: Record<string, unknown> = { ...base };
    const forMode = mode;
    pendingRequest.current = { mode, request };
    let outcome: JobOutcome | undefined;
    if (mode === 'txt2img') {
      outcome = await jobs.txt2img.submit(base);
    } else {
      if (!input) {
        setLocalError({ field: 'image', message: 'Choose a picture to start from.' });
        return;
      }
      if (strength !== undefined) request.strength = strength;
      if (mode === 'img2img') {
        outcome = await jobs.img2img.submit({ ...base, ...(strength !== undefined ? { strength } : {}), input_image: input.png });
      } else {
        const maskPng = await mask.current?.exportMask();
        if (!maskPng) {
          setLocalError({ field: 'mask', message: 'Paint over the part of the picture to repaint first.' });
          return;
        }
        outcome = await jobs.inpaint.submit({ ...base, ...(strength !== undefined ? { strength } : {}), init_image: input.png, mask_image: maskPng });
      }
    }
    if (readPendingJob()?.mode === forMode) writePendingJob(null);
    if (outcome) await save(outcome, OPERATION[forMode], request, forMode).catch(() => undefined);
  };

  const fieldMessage = (field: string) => (fieldError?.field === field ? fieldError.message : undefined);
  const generalError = job.phase === 'failed' && !apiField && !apiError?.isUnauthorized;

  return (
    <div className="studio">
      <form
        className="controls"
        noValidate
        aria-label={`${SUBMIT_LABEL[mode]} settings`}
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        {mode !== 'txt2img' && (
          <ImagePicker
            label={mode === 'img2img' ? 'Starting picture' : 'Picture to repaint'}
            galleryAction={mode === 'img2img' ? 'Img2img' : 'Inpaint'}
            hasImage={input !== null}
            preview={mode === 'img2img' ? input?.url ?? null : null}
            caption={input ? `${input.width}×${input.height}` : null}
            error={fieldMessage('image')}
            onFile={onPickFile}
            onClear={onClearInput}
          />
        )}
        {mode === 'inpaint' && input && (
          <MaskEditor ref={mask} imageUrl={input.url} width={input.width} height={input.height} error={fieldMessage('mask')} />
        )}
        <ParamsForm
          params={params}
          onChange={onParamsChange}
          info={info}
          strengthField={mode === 'txt2img' ? null : strengthFieldOf(mode)}
          fieldError={fieldError}
          onSubmitShortcut={() => void submit()}
        />
        <div className="submit-row">
          <button type="submit" className="primary" disabled={job.busy}>
            {SUBMIT_LABEL[mode]}
          </button>
          <span className="hint">Ctrl+Enter in a prompt</span>
        </div>
      </form>
      <JobPanel
        job={job}
        results={results[mode]}
        onCancel={() => void job.cancel()}
        showError={generalError}
        fieldErrorShown={fieldError !== null && job.phase === 'failed'}
      />
    </div>
  );
}
