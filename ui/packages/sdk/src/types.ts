/**
 * Every request and response shape of the sd-worker native job API, in one file so that it can be checked
 * against the worker's `/openapi.json` (see `openapi-check.ts` and `FIELDS` below).
 *
 * Field names are the wire names (snake_case) on purpose: what you send is what the worker reads.
 */

/** The three job kinds `POST /v1/jobs` accepts, told apart by the `operation` tag. */
export type Operation = 'image_generation' | 'image_transform' | 'image_inpaint';

/** Fields shared by every job request. Only `prompt` is required; the worker fills in the rest. */
export interface GenerationParams {
  prompt: string;
  negative_prompt?: string;
  /** Denoising steps, 1..=150 (worker default 20). */
  steps?: number;
  /** Classifier-free guidance, 0..=30 (worker default 7.5). */
  guidance_scale?: number;
  /** Seed of the first image; omitted means the worker picks one (reported back in `complete.seeds`). */
  seed?: number;
  /** Multiple of 8 (worker default 512, or the model's native size). */
  width?: number;
  height?: number;
  /** One of `WorkerInfo.samplers`. */
  sampler?: string;
  /** Images in this job; image i uses seed + i (the worker also reads the alias `num_images`). */
  batch?: number;
  /** 1 = last CLIP layer (default), 2 = penultimate. */
  clip_skip?: number;
  /**
   * `a1111` (weights, `BREAK`, `[from:to:when]`, `[a|b]`, any length) or `plain` (literal, 77 tokens as
   * diffusers). Default: the worker's `--prompt-syntax`.
   */
  prompt_syntax?: 'a1111' | 'plain';
  /** LoRAs for this job (names from `GET /v1/loras`), as `<lora:NAME:WEIGHT>` tags would apply them. */
  loras?: LoraRef[];
  /** Routing fields an orchestrator may add; the worker ignores them. */
  hive_id?: string;
  model?: string;
  worker_id?: string;
}

/** One LoRA of a job: a file name from `--lora-dir` (without `.safetensors`) and its weight. */
export interface LoraRef {
  name: string;
  weight?: number;
}

/**
 * One entry of `GET /v1/loras`: a LoRA file of the worker's `--lora-dir` folders, by the name that
 * `<lora:NAME:WEIGHT>` and `LoraRef.name` use. (The worker's OpenAPI document gives no schema for this
 * answer, so it is not in `FIELDS`.)
 */
export interface LoraInfo {
  name: string;
}

/** How an input image of another size becomes width x height. */
export type ResizeMode = 'resize' | 'crop' | 'fill';

export interface ImageGenerationRequest extends GenerationParams {
  operation: 'image_generation';
}

/** img2img. */
export interface ImageTransformRequest extends GenerationParams {
  operation: 'image_transform';
  /** Base64 PNG, JPEG or WebP (no `data:` prefix). */
  input_image: string;
  /** 0 keeps the input, 1 ignores it (worker default 0.8). Refused for image_generation. */
  strength?: number;
  /** `resize` stretches (default), `crop` covers and crops the middle, `fill` fits and extends the edges. */
  resize_mode?: ResizeMode;
}

/** Inpainting: white mask pixels are repainted, black ones kept. */
export interface ImageInpaintRequest extends GenerationParams {
  operation: 'image_inpaint';
  /** Base64 image to paint into. */
  init_image: string;
  /** Base64 mask, same size as `init_image` (or resized by the worker); white (>= 0.5) = repaint. */
  mask_image: string;
  strength?: number;
  resize_mode?: ResizeMode;
  /** Blur the mask edges by this many pixels (0..=64, default 0). */
  mask_blur?: number;
  /** Paste the unmasked input pixels back over the result (default false). */
  preserve_unmasked?: boolean;
}

export type JobRequest = ImageGenerationRequest | ImageTransformRequest | ImageInpaintRequest;

/** Answer to `POST /v1/jobs` (2xx). */
export interface SubmitJobResponse {
  job_id: string;
  /** Path of the job's event stream, relative to the worker's base URL. */
  sse_url: string;
  /** Path of `GET /v1/jobs/{id}`. */
  status_url: string;
  status: JobStatus;
  /** 1 = starts next. */
  position: number;
  /** One per image (image i uses seed + i). */
  seeds: number[];
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface Progress {
  step: number;
  total: number;
  percent: number;
  /** Estimated milliseconds until the last step, from the mean step time so far. */
  eta_ms?: number | null;
}

/** Where a finished job's time went, in milliseconds. */
export interface JobTimings {
  /** Submitted -> started. */
  queue_ms?: number;
  text_encode_ms?: number;
  denoise_ms?: number;
  decode_ms?: number;
  /** The core's whole generate call. */
  generate_ms?: number;
  /** PNG encoding of the results. */
  encode_ms?: number;
  /** Submitted -> finished. */
  total_ms?: number;
}

/** The payload of the stream's `complete` event. */
export interface JobResult {
  /**
   * One entry per image: base64 PNG (what the worker streams), a `data:` URL, or a path such as
   * `/v1/jobs/{id}/images/0`. `SdWorkerClient.imageBlob` turns any of these into bytes.
   */
  images: string[];
  seeds: number[];
  timings?: JobTimings;
}

/** The `result` of `GET /v1/jobs/{id}` for a finished job. */
export interface JobResultView {
  /** Paths of the PNG images (`/v1/jobs/{id}/images/{n}`), one per seed. */
  images: string[];
  seeds: number[];
  /** The VAE decoded in tiles (only when a whole decode did not fit in memory, or tiling was forced on). */
  vae_tiled: boolean;
  /** The prompts exactly as sent (A1111 syntax and LoRA tags included). */
  prompt: string;
  negative_prompt: string;
  /** Things that did not fail the job but change its meaning (e.g. a plain prompt cut at 77 tokens). */
  warnings?: string[];
  /** The model that made the images, as A1111's `Model` names it. */
  model?: string;
  /** A1111's short model hash (`Model hash`): the first 10 hex digits of a single file's SHA-256. */
  model_hash?: string;
}

/** The `error` object of every 4xx/5xx body, and of a failed job. */
export interface ErrorDetail {
  /** Stable and machine-readable, e.g. `invalid_steps`, `queue_full`, `job_not_found`. */
  code: string;
  message: string;
  /** The request field at fault, for validation errors (e.g. `"steps"`). */
  field?: string | null;
}

/** Body of every error response: `{"error":{"code","message","field"}}`. */
export interface ErrorBody {
  error: ErrorDetail;
}

/** Answer to `GET /v1/jobs/{id}`. */
export interface JobInfo {
  id: string;
  operation: Operation;
  status: JobStatus;
  /** 1-based place in the queue while queued. */
  position?: number | null;
  progress?: Progress | null;
  seeds: number[];
  /** Output size in pixels. */
  width: number;
  height: number;
  /** RFC 3339. */
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  result?: JobResultView | null;
  error?: ErrorDetail | null;
  timings?: JobTimings | null;
}

/** Answer to `GET /v1/jobs`. */
export interface JobList {
  jobs: JobInfo[];
}

/** Answer to `DELETE /v1/jobs/{id}`. */
export interface CancelResponse {
  job_id: string;
  /** `cancelled` (it was waiting) or `cancelling` (it stops after the current step). */
  status: string;
}

/** Bounds on what one request may ask for. */
export interface WorkerLimits {
  max_prompt_chars: number;
  min_steps: number;
  max_steps: number;
  max_guidance_scale: number;
  /** Smallest and largest width or height. */
  min_side: number;
  max_side: number;
  /** width x height x batch. */
  max_pixels: number;
  max_batch: number;
  max_clip_skip: number;
  /** How prompts are read when a job does not say (`--prompt-syntax`). */
  default_prompt_syntax: 'a1111' | 'plain';
  /** Size of one input image file. */
  max_image_bytes: number;
  /** Width or height of an input image. */
  max_input_side: number;
  max_input_alloc: number;
  max_body_bytes: number;
}

/** What the worker uses for a field the request leaves out; the UI starts its form from these. */
export interface WorkerDefaults {
  width: number;
  height: number;
  steps: number;
  guidance_scale: number;
  sampler: string;
}

export interface QueueInfo {
  max: number;
  depth: number;
  running: boolean;
}

/** Answer to `GET /v1/info`. */
export interface WorkerInfo {
  model: string;
  family: string;
  prediction_type: string;
  device: string;
  dtype: string;
  /** The model is an inpainting checkpoint (UNet with 9 input channels). */
  inpainting: boolean;
  /** Width and height must be multiples of this. */
  size_multiple: number;
  defaults: WorkerDefaults;
  samplers: string[];
  operations: string[];
  limits: WorkerLimits;
  queue: QueueInfo;
  version: string;
}

/** Events of `GET /v1/jobs/{id}/stream`, each tagged by its SSE event name. */
export type JobEvent =
  | { type: 'queued'; position: number }
  | { type: 'started' }
  | ({ type: 'progress' } & Progress)
  | { type: 'preview'; step: number; image: string }
  | ({ type: 'complete' } & JobResult)
  | ({ type: 'error' } & ErrorDetail)
  | { type: 'cancelled' };

export type JobEventType = JobEvent['type'];

/** The wire names of every SDK type, checked against the types themselves at compile time (below) and
 * against a worker's /openapi.json by `compareWithOpenApi`. */
export const FIELDS = {
  ImageGenerationRequest: [
    'operation', 'prompt', 'negative_prompt', 'steps', 'guidance_scale', 'seed', 'width', 'height',
    'sampler', 'batch', 'clip_skip', 'prompt_syntax', 'loras', 'hive_id', 'model', 'worker_id',
  ],
  ImageTransformRequest: [
    'operation', 'prompt', 'negative_prompt', 'steps', 'guidance_scale', 'seed', 'width', 'height',
    'sampler', 'batch', 'clip_skip', 'prompt_syntax', 'loras', 'hive_id', 'model', 'worker_id', 'input_image', 'strength', 'resize_mode',
  ],
  ImageInpaintRequest: [
    'operation', 'prompt', 'negative_prompt', 'steps', 'guidance_scale', 'seed', 'width', 'height',
    'sampler', 'batch', 'clip_skip', 'prompt_syntax', 'loras', 'hive_id', 'model', 'worker_id', 'init_image', 'mask_image', 'strength', 'resize_mode',
    'mask_blur', 'preserve_unmasked',
  ],
  /** Every field any operation takes: the worker documents them as one request schema. */
  JobRequest: [
    'operation', 'prompt', 'negative_prompt', 'steps', 'guidance_scale', 'seed', 'width', 'height',
    'sampler', 'batch', 'clip_skip', 'prompt_syntax', 'loras', 'hive_id', 'model', 'worker_id', 'input_image', 'init_image',
    'mask_image', 'strength', 'resize_mode', 'mask_blur', 'preserve_unmasked',
  ],
  SubmitJobResponse: ['job_id', 'sse_url', 'status_url', 'status', 'position', 'seeds'],
  Progress: ['step', 'total', 'percent', 'eta_ms'],
  JobTimings: ['queue_ms', 'text_encode_ms', 'denoise_ms', 'decode_ms', 'generate_ms', 'encode_ms', 'total_ms'],
  JobResultView: ['images', 'seeds', 'vae_tiled', 'prompt', 'negative_prompt', 'warnings', 'model', 'model_hash'],
  ErrorDetail: ['code', 'message', 'field'],
  ErrorBody: ['error'],
  JobInfo: [
    'id', 'operation', 'status', 'position', 'progress', 'seeds', 'width', 'height', 'created_at', 'started_at', 'finished_at',
    'result', 'error', 'timings',
  ],
  JobList: ['jobs'],
  CancelResponse: ['job_id', 'status'],
  WorkerLimits: [
    'max_prompt_chars', 'min_steps', 'max_steps', 'max_guidance_scale', 'min_side', 'max_side', 'max_pixels',
    'max_batch', 'max_clip_skip', 'default_prompt_syntax', 'max_image_bytes', 'max_input_side', 'max_input_alloc', 'max_body_bytes',
  ],
  WorkerDefaults: ['width', 'height', 'steps', 'guidance_scale', 'sampler'],
  QueueInfo: ['max', 'depth', 'running'],
  WorkerInfo: [
    'model', 'family', 'prediction_type', 'device', 'dtype', 'inpainting', 'size_multiple', 'defaults',
    'samplers', 'operations', 'limits', 'queue', 'version',
  ],
} as const;

export type SchemaName = keyof typeof FIELDS;

/** Keys of any member of a union (plain `keyof` gives only the shared ones). */
type AllKeys<T> = T extends unknown ? keyof T : never;

/** `true` only when the listed names are exactly the keys of `T`. */
type SameKeys<T, K extends readonly string[]> = [Exclude<AllKeys<T>, K[number]>, Exclude<K[number], AllKeys<T>>] extends [
  never,
  never,
]
  ? true
  : false;

// Compile-time guard: editing a type without its FIELDS entry (or the reverse) fails `tsc`.
const fieldListsMatchTypes: [
  SameKeys<ImageGenerationRequest, typeof FIELDS.ImageGenerationRequest>,
  SameKeys<ImageTransformRequest, typeof FIELDS.ImageTransformRequest>,
  SameKeys<ImageInpaintRequest, typeof FIELDS.ImageInpaintRequest>,
  SameKeys<JobRequest, typeof FIELDS.JobRequest>,
  SameKeys<SubmitJobResponse, typeof FIELDS.SubmitJobResponse>,
  SameKeys<Progress, typeof FIELDS.Progress>,
  SameKeys<JobTimings, typeof FIELDS.JobTimings>,
  SameKeys<JobResultView, typeof FIELDS.JobResultView>,
  SameKeys<ErrorDetail, typeof FIELDS.ErrorDetail>,
  SameKeys<ErrorBody, typeof FIELDS.ErrorBody>,
  SameKeys<JobInfo, typeof FIELDS.JobInfo>,
  SameKeys<JobList, typeof FIELDS.JobList>,
  SameKeys<CancelResponse, typeof FIELDS.CancelResponse>,
  SameKeys<WorkerLimits, typeof FIELDS.WorkerLimits>,
  SameKeys<WorkerDefaults, typeof FIELDS.WorkerDefaults>,
  SameKeys<QueueInfo, typeof FIELDS.QueueInfo>,
  SameKeys<WorkerInfo, typeof FIELDS.WorkerInfo>,
] = [true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true];
void fieldListsMatchTypes;
