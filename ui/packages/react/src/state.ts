/** The state a job hook exposes, and the pure reducer that moves it along as events arrive. */
import { ApiError, inlineImageToDataUrl, type JobEvent, type JobResult, type Progress } from '@sd-worker/sdk';

export type JobPhase = 'idle' | 'submitting' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobState {
  phase: JobPhase;
  jobId: string | null;
  /** 1-based place in the worker's queue while queued. */
  position: number | null;
  progress: Progress | null;
  /** Latest preview as a `data:` URL, while running. */
  preview: string | null;
  result: JobResult | null;
  /** A submit rejection (validation: `error.field`), a failed job, or a lost worker. */
  error: Error | null;
  /** True between submit and the job's end. */
  busy: boolean;
}

export type JobAction =
  | { kind: 'reset' }
  | { kind: 'submitting' }
  | { kind: 'submitted'; jobId: string }
  | { kind: 'event'; event: JobEvent }
  | { kind: 'failed'; error: Error };

export const initialJobState: JobState = {
  phase: 'idle',
  jobId: null,
  position: null,
  progress: null,
  preview: null,
  result: null,
  error: null,
  busy: false,
};

export function jobReducer(state: JobState, action: JobAction): JobState {
  switch (action.kind) {
    case 'reset':
      return initialJobState;
    case 'submitting':
      return { ...initialJobState, phase: 'submitting', busy: true };
    case 'submitted':
      return { ...state, jobId: action.jobId, phase: state.phase === 'submitting' ? 'queued' : state.phase };
    case 'failed':
      return { ...state, phase: 'failed', error: action.error, busy: false };
    case 'event':
      return applyEvent(state, action.event);
  }
}

function applyEvent(state: JobState, event: JobEvent): JobState {
  if (!state.busy && state.phase !== 'idle') return state; // the job already ended; ignore stragglers
  switch (event.type) {
    case 'queued':
      return { ...state, phase: 'queued', position: event.position, busy: true };
    case 'started':
      return { ...state, phase: 'running', position: null, busy: true };
    case 'progress': {
      const { step, total, percent, eta_ms } = event;
      return { ...state, phase: 'running', position: null, progress: { step, total, percent, eta_ms }, busy: true };
    }
    case 'preview':
      return event.image ? { ...state, preview: inlineImageToDataUrl(event.image) } : state;
    case 'complete': {
      const result: JobResult = { images: event.images, seeds: event.seeds };
      if (event.timings) result.timings = event.timings;
      const total = state.progress?.total ?? 0;
      const progress = { step: total, total, percent: 100, eta_ms: 0 };
      return { ...state, phase: 'succeeded', result, progress, busy: false };
    }
    case 'error':
      return {
        ...state,
        phase: 'failed',
        error: new ApiError(0, { code: event.code, message: event.message, field: event.field }),
        busy: false,
      };
    case 'cancelled':
      return { ...state, phase: 'cancelled', busy: false };
  }
}
