//! Request validation at the edge: a raw [`JobBody`] becomes a [`ValidJob`] (a typed engine request with
//! every default filled in from the model) or a [`FieldError`] naming the first bad field. Nothing invalid is
//! ever queued, and the engine never re-checks.

mod body;
mod image;
mod loras;

pub use body::{parse_job_body, JobBody, OperationName};
pub use loras::{check_lora_tags, LoraField};

use sd_core::pipeline::{GenerateRequest, InitImage, ModelInfo};
use sd_core::prompt::PromptSyntax;
use sd_core::schedulers::SamplerKind;
use sd_engine::{JobRequest, Operation};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::FieldError;

/// Bounds on what one request may ask for; reported by `GET /v1/info`.
#[derive(Clone, Debug, Serialize, ToSchema)]
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
    #[schema(value_type = String)]
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

/// A request that passed every check, ready for [`sd_engine::Engine::submit`].
#[derive(Debug)]
pub struct ValidJob(pub JobRequest);

/// Checks every field of `body` against `limits`, filling defaults from `model`.
pub fn validate(body: JobBody, model: &ModelInfo, limits: &Limits) -> Result<ValidJob, FieldError> {
    let operation = match body.operation {
        Some(OperationName::ImageGeneration) => Operation::ImageGeneration,
        Some(OperationName::ImageTransform) => Operation::ImageTransform,
        Some(OperationName::ImageInpaint) => Operation::ImageInpaint,
        None => {
            return Err(FieldError::new(
                "missing_field",
                "operation",
                "operation is required",
            ))
        }
    };
    refuse_unused_fields(operation, &body)?;
    let prompt = loras::append_lora_tags(
        prompt(body.prompt.as_deref(), limits)?,
        body.loras.as_deref().unwrap_or_default(),
    )?;
    let negative_prompt = bounded_text(
        "negative_prompt",
        body.negative_prompt.as_deref().unwrap_or(""),
        limits,
    )?;
    let steps = in_range(
        "steps",
        "invalid_steps",
        body.steps,
        model.default_steps as i64,
        limits.min_steps,
        limits.max_steps,
    )?;
    let guidance_scale = guidance(body.guidance_scale, model.default_guidance, limits)?;
    let prompt_syntax = match body.prompt_syntax.as_deref() {
        None => limits.default_prompt_syntax,
        Some(text) => PromptSyntax::parse(text).map_err(|_| {
            FieldError::new(
                "invalid_prompt_syntax",
                "prompt_syntax",
                format!("prompt_syntax `{text}` is not known: use \"a1111\" or \"plain\""),
            )
        })?,
    };
    let batch = in_range("batch", "invalid_batch", body.batch, 1, 1, limits.max_batch)?;
    let clip_skip = in_range(
        "clip_skip",
        "invalid_clip_skip",
        body.clip_skip,
        1,
        1,
        limits.max_clip_skip,
    )?;
    let sampler = match body.sampler.as_deref() {
        None => None,
        Some(name) => Some(SamplerKind::parse(name).map_err(|_| {
            FieldError::new(
                "unknown_sampler",
                "sampler",
                format!(
                    "unknown sampler {name:?}; known: {}",
                    SamplerKind::names().join(", ")
                ),
            )
        })?),
    };
    let seeds = seeds(body.seed, batch)?;

    let (image_field, mask_field, default_strength) = match operation {
        Operation::ImageGeneration => (None, None, 1.0),
        Operation::ImageTransform => (Some(("input_image", &body.input_image)), None, 0.8),
        Operation::ImageInpaint => (
            Some(("init_image", &body.init_image)),
            Some(("mask_image", &body.mask_image)),
            1.0,
        ),
    };
    let decoded = match image_field {
        Some((field, encoded)) => {
            let encoded = encoded
                .as_deref()
                .ok_or_else(|| required(field, operation))?;
            Some(image::decode_image(field, encoded, limits)?)
        }
        None => None,
    };
    let mask = match mask_field {
        Some((field, encoded)) => {
            let encoded = encoded
                .as_deref()
                .ok_or_else(|| required(field, operation))?;
            Some(image::decode_image(field, encoded, limits)?)
        }
        None => None,
    };
    let (default_width, default_height) = match &decoded {
        Some(picture) => (
            round_down(picture.width() as i64, model),
            round_down(picture.height() as i64, model),
        ),
        None => (model.default_width as i64, model.default_height as i64),
    };
    let width = side("width", body.width.unwrap_or(default_width), model, limits)?;
    let height = side(
        "height",
        body.height.unwrap_or(default_height),
        model,
        limits,
    )?;
    if width * height * batch > limits.max_pixels {
        return Err(FieldError::new(
            "too_many_pixels",
            "width",
            format!(
                "width x height x batch = {} exceeds the budget of {} pixels",
                width * height * batch,
                limits.max_pixels
            ),
        ));
    }
    let strength = match (operation, body.strength) {
        (Operation::ImageGeneration, Some(_)) => {
            return Err(FieldError::new(
                "unexpected_field",
                "strength",
                "strength is only for image_transform and image_inpaint",
            ))
        }
        (_, Some(strength)) if !(0.0..=1.0).contains(&strength) => {
            return Err(FieldError::new(
                "invalid_strength",
                "strength",
                "strength must be between 0 and 1",
            ))
        }
        (_, strength) => strength.unwrap_or(default_strength),
    };
    let (w, h) = (width as u32, height as u32);
    let resize_mode = image::resize_mode(body.resize_mode.as_deref())?;
    let mask_blur = match body.mask_blur {
        Some(blur) if !(0.0..=64.0).contains(&blur) => {
            return Err(FieldError::new(
                "invalid_mask_blur",
                "mask_blur",
                "mask_blur must be between 0 and 64 pixels",
            ))
        }
        blur => blur.unwrap_or(0.0) as f32,
    };
    let mask = match mask {
        Some(mask) => Some(image::to_mask(&mask, w, h, resize_mode, mask_blur)?),
        None => None,
    };
    let init = match decoded {
        Some(picture) => Some(InitImage {
            image: image::to_rgb(&picture, w, h, resize_mode).map_err(|error| {
                error.field(image_field.map_or("input_image", |(field, _)| field))
            })?,
            strength,
            mask,
            preserve_unmasked: body.preserve_unmasked.unwrap_or(false),
        }),
        None => None,
    };
    Ok(ValidJob(JobRequest {
        operation,
        generate: GenerateRequest {
            prompt,
            negative_prompt,
            steps: steps as usize,
            guidance_scale,
            width: width as usize,
            height: height as usize,
            sampler,
            seeds,
            clip_skip: clip_skip as usize,
            init,
            size_conditioning: Default::default(),
            prompt_syntax,
        },
    }))
}

fn required(field: &str, operation: Operation) -> FieldError {
    let name = match operation {
        Operation::ImageGeneration => "image_generation",
        Operation::ImageTransform => "image_transform",
        Operation::ImageInpaint => "image_inpaint",
    };
    FieldError::new(
        "missing_field",
        field,
        format!("{field} is required for {name}"),
    )
}

fn refuse_unused_fields(operation: Operation, body: &JobBody) -> Result<(), FieldError> {
    let used: &[&str] = match operation {
        Operation::ImageGeneration => &[],
        Operation::ImageTransform => &["input_image", "resize_mode"],
        Operation::ImageInpaint => &[
            "init_image",
            "mask_image",
            "preserve_unmasked",
            "mask_blur",
            "resize_mode",
        ],
    };
    let given = [
        ("input_image", body.input_image.is_some()),
        ("init_image", body.init_image.is_some()),
        ("mask_image", body.mask_image.is_some()),
        ("preserve_unmasked", body.preserve_unmasked.is_some()),
        ("mask_blur", body.mask_blur.is_some()),
        ("resize_mode", body.resize_mode.is_some()),
    ];
    for (field, given) in given {
        if given && !used.contains(&field) {
            return Err(FieldError::new(
                "unexpected_field",
                field,
                format!("{field} is not used by this operation"),
            ));
        }
    }
    Ok(())
}

fn prompt(prompt: Option<&str>, limits: &Limits) -> Result<String, FieldError> {
    let prompt =
        prompt.ok_or_else(|| FieldError::new("missing_field", "prompt", "prompt is required"))?;
    if prompt.trim().is_empty() {
        return Err(FieldError::new(
            "empty_prompt",
            "prompt",
            "prompt must not be empty",
        ));
    }
    bounded_text("prompt", prompt, limits)
}

fn bounded_text(field: &str, text: &str, limits: &Limits) -> Result<String, FieldError> {
    if text.chars().count() > limits.max_prompt_chars {
        return Err(FieldError::new(
            "prompt_too_long",
            field,
            format!(
                "{field} is longer than {} characters",
                limits.max_prompt_chars
            ),
        ));
    }
    Ok(text.to_owned())
}

fn in_range(
    field: &str,
    code: &'static str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, FieldError> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            code,
            field,
            format!("{field} must be between {min} and {max}, got {value}"),
        ))
    }
}

fn guidance(value: Option<f64>, default: f64, limits: &Limits) -> Result<f64, FieldError> {
    let value = value.unwrap_or(default);
    if value.is_finite() && (0.0..=limits.max_guidance_scale).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            "invalid_guidance",
            "guidance_scale",
            format!(
                "guidance_scale must be between 0 and {}",
                limits.max_guidance_scale
            ),
        ))
    }
}

fn side(field: &str, value: i64, model: &ModelInfo, limits: &Limits) -> Result<i64, FieldError> {
    let multiple = model.size_multiple.max(1) as i64;
    if !(limits.min_side..=limits.max_side).contains(&value) {
        return Err(FieldError::new(
            "invalid_size",
            field,
            format!(
                "{field} must be between {} and {}, got {value}",
                limits.min_side, limits.max_side
            ),
        ));
    }
    if value % multiple != 0 {
        return Err(FieldError::new(
            "invalid_size",
            field,
            format!("{field} must be a multiple of {multiple}, got {value}"),
        ));
    }
    Ok(value)
}

fn round_down(value: i64, model: &ModelInfo) -> i64 {
    let multiple = model.size_multiple.max(1) as i64;
    value / multiple * multiple
}

/// Image i gets seed s + i; a missing or -1 seed draws s at random (within 32 bits, as A1111 does).
fn seeds(seed: Option<i128>, batch: i64) -> Result<Vec<u64>, FieldError> {
    let first = match seed {
        None | Some(-1) => u64::from(rand::random::<u32>()),
        Some(seed) => u64::try_from(seed).map_err(|_| {
            FieldError::new(
                "invalid_seed",
                "seed",
                "seed must be -1 (random) or between 0 and 2^64 - 1",
            )
        })?,
    };
    Ok((0..batch as u64)
        .map(|index| first.wrapping_add(index))
        .collect())
}
