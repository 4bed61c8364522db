//! What clients send: the `POST /v1/jobs` body, its LoRA entries, and the prompt syntax names.
//! Every body field is optional so that the server's validation, not serde, decides what is required and
//! says why; the client serializes only the fields it sets.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OperationName {
    ImageGeneration,
    ImageTransform,
    ImageInpaint,
}

/// How a prompt is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptSyntax {
    /// A1111's weights, `BREAK`, `[from:to:when]`, `[a|b]`, chunks of 75 tokens.
    #[default]
    A1111,
    /// diffusers-exact: the literal text, 77 tokens, longer truncated (and said so in the result).
    Plain,
}

/// A prompt syntax name that is neither `a1111` nor `plain` (nor one of their aliases).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPromptSyntax(pub String);

impl std::fmt::Display for UnknownPromptSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid input: prompt syntax `{}`: use a1111 or plain",
            self.0
        )
    }
}

impl std::error::Error for UnknownPromptSyntax {}

impl PromptSyntax {
    pub fn parse(text: &str) -> Result<Self, UnknownPromptSyntax> {
        match text.trim().to_ascii_lowercase().as_str() {
            "a1111" | "webui" | "auto1111" => Ok(Self::A1111),
            "plain" | "diffusers" => Ok(Self::Plain),
            _ => Err(UnknownPromptSyntax(text.to_owned())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::A1111 => "a1111",
            Self::Plain => "plain",
        }
    }
}

/// One LoRA of the native `loras` field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoraField {
    /// The file name without `.safetensors` (`GET /v1/loras`).
    pub name: String,
    /// Multiplier, default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// `POST /v1/jobs`. Fields a given `operation` does not use are refused; `hive_id`, `model` and `worker_id`
/// are routing fields of the orchestrator and ignored. Defaults not given below come from the loaded model
/// (`GET /v1/info`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobBody {
    /// `image_generation`, `image_transform` (img2img) or `image_inpaint`.
    #[cfg_attr(feature = "openapi", schema(value_type = OperationName))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationName>,
    /// Required; non-empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// 1..=150; default the model's (20 for SD 1.x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    /// 0..=30; default the model's (7.5 for SD 1.x). <= 1 disables classifier-free guidance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    /// Seed of image 0; image i uses seed + i. Omitted or -1: random. The seeds used are reported.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i128>,
    /// Multiple of 8; default the model's (512 for SD 1.x), or the input image's size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// ddim, pndm, euler, euler_a, heun, dpmpp_2m, dpmpp_2m_karras, unipc, lcm, or A1111 display names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// Number of images (alias `num_images`), default 1.
    #[serde(alias = "num_images", skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
    /// 1 = last CLIP layer (default), 2 = penultimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_skip: Option<i64>,
    /// `a1111` (A1111's weights, `BREAK`, `[from:to:when]`, `[a|b]`, any length in 75-token chunks) or
    /// `plain` (the literal text, 77 tokens as diffusers; a truncation is reported in the result's
    /// `warnings`). Default: the server's `--prompt-syntax` (a1111).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_syntax: Option<String>,
    /// `image_transform`: the starting picture, base64 PNG/JPEG/WebP (a `data:` URL is fine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_image: Option<String>,
    /// `image_inpaint`: the picture to repaint, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    /// `image_inpaint`: white = repaint, black = keep; base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_image: Option<String>,
    /// `image_inpaint`: paste the unmasked input pixels back over the result (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_unmasked: Option<bool>,
    /// `image_inpaint`: blur the mask edges by this many pixels (0..=64, default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_blur: Option<f64>,
    /// `image_transform`/`image_inpaint`: how an input of another size becomes width x height: `resize`
    /// (stretch, default), `crop` (scale to cover, crop the middle) or `fill` (scale to fit, extend the edges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize_mode: Option<String>,
    /// 0..=1: how much of the input image to replace; default 0.8 (transform) or 1.0 (inpaint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// LoRAs for this job (`GET /v1/loras`), added to the prompt as `<lora:NAME:WEIGHT>` tags (which the
    /// prompt may also carry itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loras: Option<Vec<LoraField>>,
    /// Ignored (orchestrator routing).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hive_id: Option<serde_json::Value>,
    /// On a fleet gateway: the model to run the job on (a name its workers registered); ignored by a
    /// single-model worker.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<serde_json::Value>,
    /// Ignored (orchestrator routing).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<serde_json::Value>,
}
