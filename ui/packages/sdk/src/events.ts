/** Turns raw SSE messages of a job stream into typed `JobEvent`s, tolerant of how the worker spells them. */
import type { SseMessage } from './sse.js';
import type { ErrorDetail, JobEvent, JobEventType } from './types.js';

const EVENT_TYPES: ReadonlySet<string> = new Set<JobEventType>([
  'queued', 'started', 'progress', 'preview', 'complete', 'error', 'cancelled',
]);

/** The end-of-stream sentinel `data: [DONE]`. */
export const DONE = Symbol('done');

/**
 * Reads one SSE message. Returns `DONE` for `[DONE]`, `undefined` for anything that is not a job event
 * (keep-alives, event types a newer worker added), or the event. The type comes from the SSE `event:` name,
 * or from a `type` field in the data when the worker sends plain `message`s.
 */
export function decodeJobEvent(message: SseMessage): JobEvent | typeof DONE | undefined {
  const data = message.data.trim();
  if (data === '[DONE]') return DONE;
  let payload: Record<string, unknown> = {};
  if (data !== '') {
    try {
      const parsed: unknown = JSON.parse(data);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        payload = parsed as Record<string, unknown>;
      }
    } catch {
      // a payload we can't read: the event name alone may still say enough (started, cancelled)
    }
  }
  const type = message.event !== 'message' ? message.event : String(payload.type ?? payload.event ?? '');
  if (!EVENT_TYPES.has(type)) return undefined;
  switch (type as JobEventType) {
    case 'queued':
      return { type: 'queued', position: numberOr(payload.position, 0) };
    case 'started':
      return { type: 'started' };
    case 'progress': {
      const step = numberOr(payload.step, 0);
      const total = numberOr(payload.total, 0);
      const percent = numberOr(payload.percent, total > 0 ? (100 * step) / total : 0);
      const eta = payload.eta_ms;
      return { type: 'progress', step, total, percent, eta_ms: typeof eta === 'number' ? eta : null };
    }
    case 'preview':
      return { type: 'preview', step: numberOr(payload.step, 0), image: String(payload.image ?? '') };
    case 'complete': {
      const images = Array.isArray(payload.images) ? payload.images.map(imageString) : [];
      const seeds = Array.isArray(payload.seeds) ? payload.seeds.map((s) => Number(s)) : [];
      const event: JobEvent = { type: 'complete', images, seeds };
      if (typeof payload.timings === 'object' && payload.timings !== null) {
        event.timings = payload.timings as Record<string, number>;
      }
      return event;
    }
    case 'error': {
      const body = errorBody(payload);
      return { type: 'error', ...body };
    }
    case 'cancelled':
      return { type: 'cancelled' };
  }
}

/** complete/error/cancelled: nothing follows these for a job. */
export function isTerminal(event: JobEvent): boolean {
  return event.type === 'complete' || event.type === 'error' || event.type === 'cancelled';
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

/** An image entry is a string, or an object carrying one (`{url}` / `{b64_json}` / `{image}`). */
function imageString(entry: unknown): string {
  if (typeof entry === 'string') return entry;
  if (typeof entry === 'object' && entry !== null) {
    const record = entry as Record<string, unknown>;
    for (const key of ['url', 'b64_json', 'image', 'data']) {
      if (typeof record[key] === 'string') return record[key] as string;
    }
  }
  return '';
}

function errorBody(payload: Record<string, unknown>): ErrorDetail {
  const inner = typeof payload.error === 'object' && payload.error !== null
    ? (payload.error as Record<string, unknown>)
    : payload;
  const body: ErrorDetail = {
    code: typeof inner.code === 'string' ? inner.code : 'job_failed',
    message: typeof inner.message === 'string' ? inner.message : 'the job failed',
  };
  if (typeof inner.field === 'string') body.field = inner.field;
  return body;
}
