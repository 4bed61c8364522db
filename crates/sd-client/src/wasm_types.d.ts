/** Options of `new SdClient(baseUrl, config)`. */
export interface SdClientConfig {
  /** Sent as `Authorization: Bearer KEY`. */
  apiKey?: string;
  /** Whole-request limit for everything but event streams (default 30000). */
  timeoutMs?: number;
  /** A stream silent this long (no event, no keep-alive) is reconnected (default 45000). */
  idleTimeoutMs?: number;
  /** Failed reconnects in a row before the stream rejects (default 5). */
  maxReconnects?: number;
  /** First reconnect delay, doubling per failure (default 250). */
  reconnectDelayMs?: number;
}

/** What every SdClient promise rejects with. */
export interface SdError extends Error {
  kind: 'invalid' | 'unauthorized' | 'forbidden' | 'not_found' | 'expired' | 'conflict' | 'busy' | 'server'
    | 'timeout' | 'transport' | 'decode' | 'config';
  status: number | null;
  /** The server's stable error code, e.g. `invalid_steps`, `job_not_found`, `queue_full`. */
  code: string | null;
  field: string | null;
  retryAfterMs: number | null;
}

export type OperationName = 'image_generation' | 'image_transform' | 'image_inpaint';
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface LoraField { name: string; weight?: number }

/** `POST /v1/jobs`; see the server's OpenAPI document for every field's meaning. */
export interface JobBody {
  operation: OperationName;
  prompt: string;
  negative_prompt?: string;
  steps?: number;
  guidance_scale?: number;
  seed?: number;
  width?: number;
  height?: number;
  sampler?: string;
  batch?: number;
  clip_skip?: number;
  prompt_syntax?: string;
  input_image?: string;
  init_image?: string;
  mask_image?: string;
  preserve_unmasked?: boolean;
  mask_blur?: number;
  resize_mode?: string;
  strength?: number;
  loras?: LoraField[];
  hive_id?: string;
  model?: string;
  worker_id?: string;
}

export interface JobAccepted {
  job_id: string;
  sse_url: string;
  status_url: string;
  status: JobStatus;
  position: number;
  seeds: number[];
}

export interface Progress { step: number; total: number; percent: number; eta_ms: number }
export interface JobError { code: string; message: string }
export interface JobTimings {
  queue_ms: number; text_encode_ms: number; denoise_ms: number; decode_ms: number;
  generate_ms: number; encode_ms: number; total_ms: number;
}

export interface JobResultView {
  images: string[];
  seeds: number[];
  vae_tiled: boolean;
  prompt: string;
  negative_prompt: string;
  warnings?: string[];
  model: string;
  model_hash?: string;
}

export interface JobView {
  id: string;
  operation: OperationName;
  status: JobStatus;
  position?: number;
  progress?: Progress;
  seeds: number[];
  width: number;
  height: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  result?: JobResultView;
  error?: JobError;
  timings?: JobTimings;
}

export interface JobList { jobs: JobView[] }
export interface CancelResponse { job_id: string; status: 'cancelled' | 'cancelling' }

export type JobEvent =
  | { type: 'queued'; position: number }
  | { type: 'started' }
  | { type: 'progress'; step: number; total: number; percent: number; eta_ms: number }
  | { type: 'preview'; step: number; image: string }
  | { type: 'complete'; images: string[]; seeds: number[]; timings: JobTimings }
  | { type: 'error'; code: string; message: string }
  | { type: 'cancelled' };

export interface Limits {
  max_prompt_chars: number; min_steps: number; max_steps: number; max_guidance_scale: number;
  min_side: number; max_side: number; max_pixels: number; max_batch: number; max_clip_skip: number;
  max_image_bytes: number; max_input_side: number; max_input_alloc: number; max_body_bytes: number;
  default_prompt_syntax: string;
}
export interface Defaults { width: number; height: number; steps: number; guidance_scale: number; sampler: string }
export interface QueueInfo { max: number; depth: number; running: boolean }
export interface Info {
  model: string; family: string; prediction_type: string; device: string; dtype: string;
  inpainting: boolean; size_multiple: number; defaults: Defaults; samplers: string[]; operations: string[];
  limits: Limits; queue: QueueInfo; version: string;
}
export interface LoraList { loras: { name: string }[] }
export interface ModelList { object: string; data: { id: string; object: string; created: number; owned_by: string }[] }
