//! What the server answers: job views and listings, the error body, `/v1/info` with its limits, and the
//! LoRA and model listings. Fields the server leaves out when empty default when read back.

use serde::{Deserialize, Serialize};

use crate::job::{JobError, JobStatus, JobTimings, Operation, Progress};
use crate::request::PromptSyntax;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobAccepted {
    pub job_id: String,
    /// `GET` this for Server-Sent Events.
    pub sse_url: String,
    pub status_url: String,
    pub status: JobStatus,
    /// 1 = starts next.
    pub position: usize,
    /// One per image.
    pub seeds: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: String,
    pub operation: Operation,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub seeds: Vec<u64>,
    /// Output size in pixels (input images are resized to it).
    pub width: usize,
    pub height: usize,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResultView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<JobTimings>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobResultView {
    /// URLs of the PNG images, one per seed.
    pub images: Vec<String>,
    pub seeds: Vec<u64>,
    /// The VAE decoded in tiles (with `vae_tiling` auto only when the whole decode did not fit in memory):
    /// seams are blended, so the image differs slightly from a whole decode of the same settings.
    pub vae_tiled: bool,
    /// The prompts exactly as sent (A1111 syntax and tags included), as the PNG metadata carries them.
    pub prompt: String,
    pub negative_prompt: String,
    /// Things that did not fail the job but change its meaning, e.g. a plain-syntax prompt cut at 77 tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The model that made the images, as A1111's `Model` names it (folder or file name without extension).
    pub model: String,
    /// A1111's short hash of the model (`Model hash`): the first 10 hex digits of a single file's SHA-256
    /// (of the UNet weights for a diffusers folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelResponse {
    pub job_id: String,
    /// `cancelled` (it was waiting) or `cancelling` (it stops after the current step).
    pub status: String,
}

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable: e.g. `invalid_steps`, `queue_full`, `job_not_found`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyStatus {
    pub ready: bool,
    /// `loading`, `ready`, `failed` or `stopping`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Bounds on what one request may ask for; reported by `GET /v1/info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub max_prompt_chars: usize,
    pub min_steps: i64,
    pub max_steps: i64,
    pub max_guidance_scale: f64,
    pub min_side: i64,
    pub max_side: i64,
    /// width x height x batch.
    pub max_pixels: i64,
    pub max_batch: i64,
    pub max_clip_skip: i64,
    /// Decoded size of one input image file.
    pub max_image_bytes: usize,
    /// Width or height of an input image.
    pub max_input_side: u32,
    /// Bytes the decoder may allocate for one input image.
    pub max_input_alloc: u64,
    pub max_body_bytes: usize,
    /// How prompts are read when a request does not say (`--prompt-syntax`); the A1111 and OpenAI routes
    /// always use it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub default_prompt_syntax: PromptSyntax,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_prompt_chars: 8192,
            min_steps: 1,
            max_steps: 150,
            max_guidance_scale: 30.0,
            min_side: 64,
            max_side: 2048,
            max_pixels: 2048 * 2048,
            max_batch: 8,
            max_clip_skip: 12,
            max_image_bytes: 16 * 1024 * 1024,
            max_input_side: 4096,
            max_input_alloc: 256 * 1024 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            default_prompt_syntax: PromptSyntax::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Defaults {
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance_scale: f64,
    pub sampler: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueInfo {
    pub max: usize,
    pub depth: usize,
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Info {
    pub model: String,
    pub family: String,
    pub prediction_type: String,
    pub device: String,
    pub dtype: String,
    pub inpainting: bool,
    /// Width and height must be multiples of this.
    pub size_multiple: usize,
    pub defaults: Defaults,
    pub samplers: Vec<String>,
    pub operations: Vec<String>,
    pub limits: Limits,
    pub queue: QueueInfo,
    pub version: String,
}

/// `GET /v1/loras`: the LoRAs the `loras` field and `<lora:NAME:WEIGHT>` tags can name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoraList {
    pub loras: Vec<LoraEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoraEntry {
    /// The file name without `.safetensors`.
    pub name: String,
}

/// `GET /v1/models` (OpenAI's list format): the model(s) the server runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub owned_by: String,
}
