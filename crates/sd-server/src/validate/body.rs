//! The native job request as clients send it, and parsing it from raw bytes with errors that name the field.
//! Every field is optional here so that validation, not serde, decides what is required and says why.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};
use crate::extract::{parse_json, JsonRejection};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationName {
    ImageGeneration,
    ImageTransform,
    ImageInpaint,
}

/// `POST /v1/jobs`. Fields a given `operation` does not use are refused; `hive_id`, `model` and `worker_id`
/// are routing fields of the orchestrator and ignored. Defaults not given below come from the loaded model
/// (`GET /v1/info`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct JobBody {
    /// `image_generation`, `image_transform` (img2img) or `image_inpaint`.
    #[schema(value_type = OperationName)]
    pub operation: Option<OperationName>,
    /// Required; non-empty.
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    /// 1..=150; default the model's (20 for SD 1.x).
    pub steps: Option<i64>,
    /// 0..=30; default the model's (7.5 for SD 1.x). <= 1 disables classifier-free guidance.
    pub guidance_scale: Option<f64>,
    /// Seed of image 0; image i uses seed + i. Omitted or -1: random. The seeds used are reported.
    #[schema(value_type = Option<i64>)]
    pub seed: Option<i128>,
    /// Multiple of 8; default the model's (512 for SD 1.x), or the input image's size.
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// ddim, pndm, euler, euler_a, heun, dpmpp_2m, dpmpp_2m_karras, unipc, lcm, or A1111 display names.
    pub sampler: Option<String>,
    /// Number of images (alias `num_images`), default 1.
    #[serde(alias = "num_images")]
    pub batch: Option<i64>,
    /// 1 = last CLIP layer (default), 2 = penultimate.
    pub clip_skip: Option<i64>,
    /// `a1111` (A1111's weights, `BREAK`, `[from:to:when]`, `[a|b]`, any length in 75-token chunks) or
    /// `plain` (the literal text, 77 tokens as diffusers; a truncation is reported in the result's
    /// `warnings`). Default: the server's `--prompt-syntax` (a1111).
    pub prompt_syntax: Option<String>,
    /// `image_transform`: the starting picture, base64 PNG/JPEG/WebP (a `data:` URL is fine).
    pub input_image: Option<String>,
    /// `image_inpaint`: the picture to repaint, base64.
    pub init_image: Option<String>,
    /// `image_inpaint`: white = repaint, black = keep; base64.
    pub mask_image: Option<String>,
    /// `image_inpaint`: paste the unmasked input pixels back over the result (default false).
    pub preserve_unmasked: Option<bool>,
    /// `image_inpaint`: blur the mask edges by this many pixels (0..=64, default 0).
    pub mask_blur: Option<f64>,
    /// `image_transform`/`image_inpaint`: how an input of another size becomes width x height: `resize`
    /// (stretch, default), `crop` (scale to cover, crop the middle) or `fill` (scale to fit, extend the edges).
    pub resize_mode: Option<String>,
    /// 0..=1: how much of the input image to replace; default 0.8 (transform) or 1.0 (inpaint).
    pub strength: Option<f64>,
    /// LoRAs for this job (`GET /v1/loras`), added to the prompt as `<lora:NAME:WEIGHT>` tags (which the
    /// prompt may also carry itself).
    pub loras: Option<Vec<super::LoraField>>,
    /// Ignored (orchestrator routing).
    #[schema(value_type = Option<String>)]
    pub hive_id: Option<serde_json::Value>,
    /// On a fleet gateway: the model to run the job on (a name its workers registered); ignored by a
    /// single-model worker.
    #[schema(value_type = Option<String>)]
    pub model: Option<serde_json::Value>,
    /// Ignored (orchestrator routing).
    #[schema(value_type = Option<String>)]
    pub worker_id: Option<serde_json::Value>,
}

/// Parses a JSON body: malformed JSON is a 400; a well-formed body with a field of the wrong shape is a 422
/// naming that field (an unknown `operation` is `invalid_operation`).
pub fn parse_job_body(bytes: &[u8]) -> Result<JobBody, ApiError> {
    parse_json(bytes).map_err(|rejection| match rejection {
        JsonRejection::Field { path, message } if path == "operation" => FieldError {
            code: "invalid_operation",
            message: JsonRejection::field_message(&path, &message),
            field: Some(path),
        }
        .into(),
        other => other.into(),
    })
}
