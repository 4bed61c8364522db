//! Request validation at the edge: a raw [`JobBody`] becomes a [`ValidJob`] (a typed engine request with
//! every default filled in from the model) or a [`FieldError`] naming the first bad field. Nothing invalid is
//! ever queued, and the engine never re-checks.

mod body;
mod loras;

pub use body::{parse_job_body, JobBody, OperationName};
pub use loras::{check_lora_tags, LoraField};

use sd_core::pipeline::{GenerateRequest, ModelInfo};
use sd_core::prompt::PromptSyntax;
use sd_core::schedulers::SamplerKind;
use sd_engine::{JobRequest, Operation};

use crate::error::FieldError;
use crate::images::{self, InitSource, ResizeMode};

// `Limits` is part of `/v1/info`, so it lives in `sd-api-types` (shared with the client SDK).
pub use sd_api_types::Limits;

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

    let (image_field, mask_field) = match operation {
        Operation::ImageGeneration => (None, None),
        Operation::ImageTransform => (Some(("input_image", &body.input_image)), None),
        Operation::ImageInpaint => (
            Some(("init_image", &body.init_image)),
            Some(("mask_image", &body.mask_image)),
        ),
    };
    let decode = |input: Option<(&str, &Option<String>)>| match input {
        Some((field, encoded)) => {
            let encoded = encoded
                .as_deref()
                .ok_or_else(|| required(field, operation))?;
            images::decode_base64(field, encoded, limits).map(Some)
        }
        None => Ok(None),
    };
    let decoded = decode(image_field)?;
    let mask = decode(mask_field)?;
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
        (_, strength) => strength,
    };
    let resize_mode = ResizeMode::from_name(body.resize_mode.as_deref())?;
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
    let mask = mask.map(|mask| repaint_mask(&mask)).transpose()?;
    let init = match decoded {
        Some(picture) => Some(images::init_image(InitSource {
            image: picture.to_rgb8(),
            mask,
            width: width as u32,
            height: height as u32,
            mode: resize_mode,
            mask_blur,
            strength,
            preserve_unmasked: body.preserve_unmasked.unwrap_or(false),
            image_field: image_field.map_or("input_image", |(field, _)| field),
            mask_field: "mask_image",
        })?),
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

/// `mask_image` as a repaint mask (white, or transparent in an RGBA mask, repaints); one that repaints
/// nothing is refused.
fn repaint_mask(image: &::image::DynamicImage) -> Result<::image::GrayImage, FieldError> {
    let gray = images::mask_from_image(image);
    if !gray.pixels().any(|p| p.0[0] >= 128) {
        return Err(FieldError::new(
            "empty_mask",
            "mask_image",
            "mask_image repaints nothing: paint the region to change white (or transparent in an RGBA mask)",
        ));
    }
    Ok(gray)
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
