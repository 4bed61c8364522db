/**
 * The hooks: `useJob` follows a job by id; `useTextToImage`, `useImageToImage` and `useInpainting` submit a
 * job of their kind and follow it. All expose the same `JobState` plus `cancel`.
 */
import { useCallback, useEffect, useReducer, useRef } from 'react';
import {
  blobToBase64,
  type ImageGenerationRequest,
  type ImageInpaintRequest,
  type ImageTransformRequest,
  type JobOutcome,
  type JobRequest,
  type SdWorkerClient,
} from '@sd-worker/sdk';
import { useSdWorkerClient } from './context.js';
import { initialJobState, jobReducer, type JobState } from './state.js';

export interface HookOptions {
  /** Defaults to the client of the nearest `SdWorkerProvider`. */
  client?: SdWorkerClient;
}

export interface JobControls {
  /** Asks the worker to cancel the job (between two steps if it is running). */
  cancel: () => Promise<void>;
  /** Back to idle; stops following a job still running (the worker keeps it). */
  reset: () => void;
}

/** Follows the job `jobId` (null: nothing) and reports its state. */
export function useJob(jobId: string | null, options: HookOptions = {}): JobState & JobControls {
  const client = useSdWorkerClient(options.client);
  const [state, dispatch] = useReducer(jobReducer, initialJobState);

  useEffect(() => {
    if (!jobId) {
      dispatch({ kind: 'reset' });
      return undefined;
    }
    const controller = new AbortController();
    dispatch({ kind: 'submitting' });
    dispatch({ kind: 'submitted', jobId });
    client
      .follow(jobId, { signal: controller.signal, onEvent: (event) => dispatch({ kind: 'event', event }) })
      .then((outcome) => dispatchOutcome(dispatch, outcome))
      .catch((error: unknown) => {
        if (!controller.signal.aborted) dispatch({ kind: 'failed', error: asError(error) });
      });
    return () => controller.abort();
  }, [client, jobId]);

  const cancel = useCallback(async () => {
    if (jobId) await client.cancel(jobId);
  }, [client, jobId]);
  const reset = useCallback(() => dispatch({ kind: 'reset' }), []);
  return { ...state, cancel, reset };
}

/** Submits and follows jobs built by `toRequest`; one job at a time (a new submit stops following the old). */
function useJobRunner<P>(toRequest: (params: P) => Promise<JobRequest> | JobRequest, options: HookOptions) {
  const client = useSdWorkerClient(options.client);
  const [state, dispatch] = useReducer(jobReducer, initialJobState);
  const current = useRef<{ controller: AbortController; jobId: string | null; cancelWanted: boolean } | null>(null);
  const toRequestRef = useRef(toRequest);
  toRequestRef.current = toRequest;

  useEffect(() => () => current.current?.controller.abort(), []);

  const submit = useCallback(
    async (params: P): Promise<JobOutcome | undefined> => {
      current.current?.controller.abort();
      const run = { controller: new AbortController(), jobId: null as string | null, cancelWanted: false };
      current.current = run;
      const { signal } = run.controller;
      dispatch({ kind: 'submitting' });
      try {
        const request = await toRequestRef.current(params);
        const submitted = await client.submit(request, signal);
        run.jobId = submitted.job_id;
        dispatch({ kind: 'submitted', jobId: submitted.job_id });
        if (run.cancelWanted) void client.cancel(submitted.job_id).catch(() => undefined);
        const outcome = await client.follow(submitted.job_id, {
          signal,
          streamUrl: submitted.sse_url || undefined,
          onEvent: (event) => dispatch({ kind: 'event', event }),
        });
        dispatchOutcome(dispatch, outcome);
        return outcome;
      } catch (error) {
        if (!signal.aborted) dispatch({ kind: 'failed', error: asError(error) });
        return undefined;
      }
    },
    [client],
  );

  const cancel = useCallback(async () => {
    const run = current.current;
    if (!run) return;
    if (run.jobId) await client.cancel(run.jobId);
    else run.cancelWanted = true; // submit still in flight: cancel as soon as the id is known
  }, [client]);

  const reset = useCallback(() => {
    current.current?.controller.abort();
    current.current = null;
    dispatch({ kind: 'reset' });
  }, []);

  return { ...state, submit, cancel, reset };
}

/** An image for a job: base64 (as the API takes it), or a Blob/File the hook encodes. */
export type ImageInput = string | Blob;

export type TextToImageParams = Omit<ImageGenerationRequest, 'operation'>;
export type ImageToImageParams = Omit<ImageTransformRequest, 'operation' | 'input_image'> & { input_image: ImageInput };
export type InpaintingParams = Omit<ImageInpaintRequest, 'operation' | 'init_image' | 'mask_image'> & {
  init_image: ImageInput;
  /** White = repaint, black = keep. */
  mask_image: ImageInput;
};

export function useTextToImage(options: HookOptions = {}) {
  return useJobRunner<TextToImageParams>((params) => ({ ...params, operation: 'image_generation' }), options);
}

export function useImageToImage(options: HookOptions = {}) {
  return useJobRunner<ImageToImageParams>(
    async (params) => ({ ...params, operation: 'image_transform', input_image: await toBase64(params.input_image) }),
    options,
  );
}

export function useInpainting(options: HookOptions = {}) {
  return useJobRunner<InpaintingParams>(
    async (params) => ({
      ...params,
      operation: 'image_inpaint',
      init_image: await toBase64(params.init_image),
      mask_image: await toBase64(params.mask_image),
    }),
    options,
  );
}

async function toBase64(image: ImageInput): Promise<string> {
  if (typeof image === 'string') return image.replace(/^data:[^,]*,/, '');
  return blobToBase64(image);
}

function dispatchOutcome(dispatch: (action: Parameters<typeof jobReducer>[1]) => void, outcome: JobOutcome) {
  // The stream already delivered the terminal event; this covers a follow that learned the end from
  // GET /v1/jobs/{id} instead (joined after the job finished).
  if (outcome.status === 'succeeded') dispatch({ kind: 'event', event: { type: 'complete', ...outcome.result } });
  else if (outcome.status === 'cancelled') dispatch({ kind: 'event', event: { type: 'cancelled' } });
  else dispatch({ kind: 'event', event: { type: 'error', code: outcome.error.code, message: outcome.error.message, field: outcome.error.field } });
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
