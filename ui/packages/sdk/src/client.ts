/**
 * `SdWorkerClient`: the HTTP side of the SDK. Submits jobs, follows their SSE streams through `fetch` (so the
 * bearer token travels with them) and reconnects when a stream drops, cancels, fetches images and worker info.
 */
import { inlineImageToBlob, isInlineImage } from './base64.js';
import { ApiError, NetworkError, apiErrorFromResponse } from './errors.js';
import { DONE, decodeJobEvent, isTerminal } from './events.js';
import { SseParser } from './sse.js';
import type {
  JobEvent,
  JobInfo,
  JobList,
  JobRequest,
  JobResult,
  LoraInfo,
  SubmitJobResponse,
  WorkerInfo,
} from './types.js';

export interface ReconnectOptions {
  /** Attempts after a drop before giving up; reset whenever an event arrives. Default 5. */
  maxAttempts?: number;
  /** First wait, doubled each attempt up to `maxDelayMs`, unless the server set `retry:`. Default 500. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

export interface SdWorkerClientOptions {
  /** Worker URL, e.g. `http://127.0.0.1:8600`. Empty (the default) means same origin, for the bundled UI. */
  baseUrl?: string;
  /** Bearer token, or a function read before every request (so a key entered later is picked up). */
  apiKey?: string | null | (() => string | null | undefined);
  /** A `fetch` to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
  reconnect?: ReconnectOptions;
  /** A stream silent this long (no event, no keep-alive) is treated as dropped. Default 60 000 ms. */
  idleTimeoutMs?: number;
}

export interface FollowOptions {
  signal?: AbortSignal;
  /** Called for every event of the job, in order. */
  onEvent?: (event: JobEvent) => void;
  /** Stream URL from the submit answer; defaults to `/v1/jobs/{id}/stream`. */
  streamUrl?: string;
}

export interface RunOptions extends FollowOptions {
  /** Called once the worker accepted the job, before any event. */
  onSubmitted?: (submitted: SubmitJobResponse) => void;
}

/** How a followed job ended. A job that failed is an outcome, not an exception. */
export type JobOutcome =
  | { status: 'succeeded'; jobId: string; result: JobResult }
  | { status: 'failed'; jobId: string; error: ApiError }
  | { status: 'cancelled'; jobId: string };

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

export class SdWorkerClient {
  private readonly baseUrl: string;
  private apiKey: SdWorkerClientOptions['apiKey'];
  private readonly fetchImpl: typeof fetch;
  private readonly reconnect: Required<ReconnectOptions>;
  private readonly idleTimeoutMs: number;

  constructor(options: SdWorkerClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? '').replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    // Calling a detached window.fetch throws "Illegal invocation" in browsers.
    this.fetchImpl = (input, init) => fetchImpl.call(globalThis, input, init);
    this.reconnect = {
      maxAttempts: options.reconnect?.maxAttempts ?? 5,
      initialDelayMs: options.reconnect?.initialDelayMs ?? 500,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 10_000,
    };
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  }

  /** Replaces the bearer token (e.g. after a 401 and a prompt). */
  setApiKey(apiKey: SdWorkerClientOptions['apiKey']): void {
    this.apiKey = apiKey;
  }

  /** `GET /v1/info`: model, samplers, limits, defaults, version. */
  info(signal?: AbortSignal): Promise<WorkerInfo> {
    return this.json<WorkerInfo>('GET', '/v1/info', undefined, signal);
  }

  /** `GET /v1/loras`: the LoRAs the worker can apply (empty without `--lora-dir`). */
  async listLoras(signal?: AbortSignal): Promise<LoraInfo[]> {
    const answer = await this.json<{ loras?: LoraInfo[] }>('GET', '/v1/loras', undefined, signal);
    return Array.isArray(answer.loras) ? answer.loras : [];
  }

  /** `POST /v1/jobs`. Validation errors reject with an `ApiError` whose `field` names the culprit. */
  submit(request: JobRequest, signal?: AbortSignal): Promise<SubmitJobResponse> {
    return this.json<SubmitJobResponse>('POST', '/v1/jobs', request, signal);
  }

  /** `GET /v1/jobs/{id}`. */
  getJob(jobId: string, signal?: AbortSignal): Promise<JobInfo> {
    return this.json<JobInfo>('GET', `/v1/jobs/${encodeURIComponent(jobId)}`, undefined, signal);
  }

  /** `GET /v1/jobs`: recent jobs. */
  async listJobs(signal?: AbortSignal): Promise<JobInfo[]> {
    const answer = await this.json<JobList | JobInfo[]>('GET', '/v1/jobs', undefined, signal);
    return Array.isArray(answer) ? answer : answer.jobs;
  }

  /**
   * `DELETE /v1/jobs/{id}`. Resolves `true` when the worker cancelled it, `false` when it had already
   * finished (409); an unknown job rejects with a 404 `ApiError`.
   */
  async cancel(jobId: string, signal?: AbortSignal): Promise<boolean> {
    const response = await this.send('DELETE', `/v1/jobs/${encodeURIComponent(jobId)}`, undefined, signal);
    if (response.status === 409) {
      await response.body?.cancel();
      return false;
    }
    if (!response.ok) throw await apiErrorFromResponse(response);
    await response.body?.cancel();
    return true;
  }

  /** URL of `GET /v1/jobs/{id}/images/{n}` (needs no token only on a worker without an API key). */
  imageUrl(jobId: string, index: number): string {
    return `${this.baseUrl}/v1/jobs/${encodeURIComponent(jobId)}/images/${index}`;
  }

  /**
   * The PNG bytes of image `index` of a finished job: decoded from the result when the worker inlined it,
   * otherwise fetched (with the token) from the images route.
   */
  async imageBlob(jobId: string, index: number, result?: JobResult, signal?: AbortSignal): Promise<Blob> {
    const inline = result?.images[index];
    if (inline && isInlineImage(inline)) return inlineImageToBlob(inline);
    const path = inline && inline.startsWith('/') ? inline : `/v1/jobs/${encodeURIComponent(jobId)}/images/${index}`;
    const response = await this.send('GET', path, undefined, signal);
    if (!response.ok) throw await apiErrorFromResponse(response);
    return response.blob();
  }

  /**
   * The events of a job's stream, reconnecting after a drop until `[DONE]` or a terminal event. A worker
   * replays the current state to a new subscriber, so a reconnect may repeat `queued`/`started`.
   */
  async *events(jobId: string, options: Omit<FollowOptions, 'onEvent'> = {}): AsyncGenerator<JobEvent, void, void> {
    const { signal } = options;
    const url = this.resolve(options.streamUrl ?? `/v1/jobs/${encodeURIComponent(jobId)}/stream`);
    let attempt = 0;
    let lastEventId: string | undefined;
    let serverRetryMs: number | undefined;
    let sawTerminal = false;

    for (;;) {
      signal?.throwIfAborted();
      const connection = linkedController(signal);
      let response: Response | undefined;
      let failure: unknown;
      try {
        const headers: Record<string, string> = { ...this.authHeaders(), Accept: 'text/event-stream' };
        if (lastEventId !== undefined) headers['Last-Event-ID'] = lastEventId;
        response = await this.fetchImpl(url, { headers, signal: connection.signal, cache: 'no-store' });
      } catch (error) {
        connection.release();
        if (signal?.aborted) throw signal.reason;
        failure = error;
      }

      if (response && !response.ok) {
        connection.release();
        const error = await apiErrorFromResponse(response);
        if (!RETRYABLE_STATUS.has(response.status) || attempt >= this.reconnect.maxAttempts) throw error;
        failure = error;
        serverRetryMs = error.retryAfter !== undefined ? error.retryAfter * 1000 : serverRetryMs;
      } else if (response) {
        if (!response.body) {
          connection.release();
          throw new NetworkError('the event stream answer has no body');
        }
        const parser = new SseParser();
        const decoder = new TextDecoder();
        const reader = response.body.getReader();
        let idleTimer: ReturnType<typeof setTimeout> | undefined;
        const armIdleTimer = () => {
          clearTimeout(idleTimer);
          idleTimer = setTimeout(() => connection.abort(new NetworkError('the event stream went silent')), this.idleTimeoutMs);
        };
        try {
          armIdleTimer();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            armIdleTimer();
            for (const message of parser.feed(decoder.decode(value, { stream: true }))) {
              lastEventId = message.id ?? lastEventId;
              const event = decodeJobEvent(message);
              if (event === DONE) return;
              if (event === undefined) continue;
              attempt = 0;
              if (isTerminal(event)) sawTerminal = true;
              yield event;
            }
          }
        } catch (error) {
          if (signal?.aborted) throw signal.reason;
          failure = error;
        } finally {
          clearTimeout(idleTimer);
          serverRetryMs = parser.retry ?? serverRetryMs;
          reader.cancel().catch(() => undefined);
          connection.release();
        }
        // A worker that ends the stream right after the terminal event without [DONE] still ended it.
        if (sawTerminal) return;
      }

      attempt += 1;
      if (attempt > this.reconnect.maxAttempts) {
        throw new NetworkError(`lost the event stream of job ${jobId} and could not reconnect`, { cause: failure });
      }
      const backoff = Math.min(this.reconnect.maxDelayMs, this.reconnect.initialDelayMs * 2 ** (attempt - 1));
      await sleep(serverRetryMs ?? backoff, signal);
    }
  }

  /** Follows a submitted job to its end; resolves with its outcome (rejects only if the worker is lost). */
  async follow(jobId: string, options: FollowOptions = {}): Promise<JobOutcome> {
    for await (const event of this.events(jobId, options)) {
      options.onEvent?.(event);
      if (event.type === 'complete') {
        const result: JobResult = { images: event.images, seeds: event.seeds };
        if (event.timings) result.timings = event.timings;
        return { status: 'succeeded', jobId, result };
      }
      if (event.type === 'error') {
        return { status: 'failed', jobId, error: new ApiError(0, { code: event.code, message: event.message, field: event.field }) };
      }
      if (event.type === 'cancelled') return { status: 'cancelled', jobId };
    }
    // [DONE] without a terminal event (we joined after the end): ask for the job's state instead.
    return this.outcomeFromStatus(await this.getJob(jobId, options.signal));
  }

  /** Submits a job and follows it to its end. */
  async run(request: JobRequest, options: RunOptions = {}): Promise<JobOutcome> {
    const submitted = await this.submit(request, options.signal);
    options.onSubmitted?.(submitted);
    return this.follow(submitted.job_id, { ...options, streamUrl: submitted.sse_url || undefined });
  }

  private outcomeFromStatus(job: JobInfo): JobOutcome {
    switch (job.status) {
      case 'succeeded':
        if (job.result) return { status: 'succeeded', jobId: job.id, result: { images: job.result.images, seeds: job.result.seeds } };
        break;
      case 'failed':
        return {
          status: 'failed',
          jobId: job.id,
          error: new ApiError(0, job.error ?? { code: 'job_failed', message: 'the job failed' }),
        };
      case 'cancelled':
        return { status: 'cancelled', jobId: job.id };
      default:
        break;
    }
    throw new NetworkError(`the stream of job ${job.id} ended while the job is ${job.status}`);
  }

  private authHeaders(): Record<string, string> {
    const key = typeof this.apiKey === 'function' ? this.apiKey() : this.apiKey;
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  private resolve(path: string): string {
    if (/^https?:\/\//.test(path)) return path;
    return `${this.baseUrl}${path.startsWith('/') ? '' : '/'}${path}`;
  }

  private async send(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const headers: Record<string, string> = { ...this.authHeaders(), Accept: 'application/json' };
    const init: RequestInit = { method, headers };
    if (signal) init.signal = signal;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      return await this.fetchImpl(this.resolve(path), init);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new NetworkError(`could not reach the worker (${method} ${path})`, { cause: error });
    }
  }

  private async json<T>(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<T> {
    const response = await this.send(method, path, body, signal);
    if (!response.ok) throw await apiErrorFromResponse(response);
    try {
      return (await response.json()) as T;
    } catch (error) {
      throw new NetworkError(`the worker's answer to ${method} ${path} is not JSON`, { cause: error });
    }
  }
}

/** An AbortController that also aborts when `parent` does, and lets go of the parent when released. */
function linkedController(parent: AbortSignal | undefined) {
  const controller = new AbortController();
  const onAbort = () => controller.abort(parent?.reason);
  parent?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    abort: (reason: unknown) => controller.abort(reason),
    release: () => parent?.removeEventListener('abort', onAbort),
  };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
