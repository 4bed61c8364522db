//! An OpenAI images request -> an [`OpenAiPlan`]: the validated engine request and how to answer it.
//!
//! Fields OpenAI defines that do not change a Stable Diffusion image (`model`, `quality`, `style`, `user`,
//! `moderation`, ...) are accepted and ignored; `negative_prompt`, `steps`, `guidance_scale`, `seed`,
//! `sampler` and `clip_skip` (and `strength` for edits) are extensions our engine understands. `n` images
//! use seed, seed + 1, ...

use std::collections::HashMap;

use image::DynamicImage;
use sd_core::pipeline::{GenerateRequest, ModelInfo};
use sd_engine::metadata::ImageFormat;
use sd_engine::Operation;
use serde::Deserialize;

use super::error::OpenAiError;
use super::{output, stream};
use crate::compat::{consecutive_seeds, rename_field, validate_common, CommonFields};
use crate::error::FieldError;
use crate::images::{self, decode_bytes, InitSource, ResizeMode};
use crate::validate::Limits;

pub const MAX_N: i64 = 10;

/// The request body. Every field is optional here so validation can name what is wrong. Fields not listed
/// (`model`, `style`, `user`, `moderation`, ...) are accepted and ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct GenerationBody {
    pub prompt: Option<String>,
    pub n: Option<i64>,
    /// `WIDTHxHEIGHT` or `auto` (the model's default size).
    pub size: Option<String>,
    /// `b64_json` (default) or `url`.
    pub response_format: Option<String>,
    /// `png` (default), `jpeg` or `webp`.
    pub output_format: Option<String>,
    /// JPEG quality 0-100 (default 100); WebP is always lossless.
    pub output_compression: Option<i64>,
    /// Accepted and ignored.
    pub quality: Option<String>,
    /// `auto` or `opaque`; `transparent` is refused.
    pub background: Option<String>,
    pub stream: Option<bool>,
    /// 0-3 previews while streaming.
    pub partial_images: Option<i64>,
    pub negative_prompt: Option<String>,
    pub steps: Option<i64>,
    pub guidance_scale: Option<f64>,
    /// Seed of image 0; image i uses seed + i. -1 or absent: random.
    #[schema(value_type = Option<i64>)]
    pub seed: Option<i128>,
    /// Our sampler names or A1111's (`euler_a`, `Euler a`, `DPM++ 2M Karras`, ...).
    pub sampler: Option<String>,
    pub clip_skip: Option<i64>,
    /// A model of this worker's library (`GET /v1/models`); OpenAI's own names (`dall-e-*`, `gpt-image-*`)
    /// and absent mean the default model.
    pub model: Option<String>,
}

/// What an OpenAI route settled on before generating.
pub struct OpenAiPlan {
    /// The library model to run on (`None`: the default one).
    pub model: Option<String>,
    pub operation: Operation,
    pub request: GenerateRequest,
    pub format: ImageFormat,
    pub want_url: bool,
    pub stream: Option<stream::StreamOptions>,
}

/// `WxH` or `auto` -> explicit width and height (`None`, `None` for the model's default).
pub fn parse_size(size: Option<&str>) -> Result<(Option<i64>, Option<i64>), OpenAiError> {
    let invalid = |text: &str| {
        OpenAiError::invalid(
            "size",
            "invalid_size",
            format!("size must be WIDTHxHEIGHT (e.g. 512x512) or auto, got {text:?}"),
        )
    };
    match size.map(str::trim) {
        None | Some("auto") => Ok((None, None)),
        Some(text) => {
            let (width, height) = text.split_once(['x', 'X']).ok_or_else(|| invalid(text))?;
            let width = width.trim().parse().map_err(|_| invalid(text))?;
            let height = height.trim().parse().map_err(|_| invalid(text))?;
            Ok((Some(width), Some(height)))
        }
    }
}

pub fn parse_n(n: Option<i64>) -> Result<usize, OpenAiError> {
    match n.unwrap_or(1) {
        n @ 1..=MAX_N => Ok(n as usize),
        n => Err(OpenAiError::invalid(
            "n",
            "invalid_n",
            format!("n must be between 1 and {MAX_N}, got {n}"),
        )),
    }
}

pub fn parse_response_format(format: Option<&str>) -> Result<bool, OpenAiError> {
    match format {
        None | Some("b64_json") => Ok(false),
        Some("url") => Ok(true),
        Some(other) => Err(OpenAiError::invalid(
            "response_format",
            "invalid_value",
            format!("response_format must be b64_json or url, got {other:?}"),
        )),
    }
}

pub fn check_background(background: Option<&str>) -> Result<(), OpenAiError> {
    match background {
        None | Some("auto" | "opaque") => Ok(()),
        Some("transparent") => Err(OpenAiError::invalid(
            "background",
            "unsupported_value",
            "transparent backgrounds are not supported by Stable Diffusion; use auto or opaque",
        )),
        Some(other) => Err(OpenAiError::invalid(
            "background",
            "invalid_value",
            format!("background must be auto, opaque or transparent, got {other:?}"),
        )),
    }
}

pub fn parse_stream(
    stream: Option<bool>,
    partial_images: Option<i64>,
    quality: Option<&str>,
) -> Result<Option<stream::StreamOptions>, OpenAiError> {
    let partial_images = match partial_images.unwrap_or(0) {
        count @ 0..=3 => count as usize,
        other => {
            return Err(OpenAiError::invalid(
                "partial_images",
                "invalid_value",
                format!("partial_images must be between 0 and 3, got {other}"),
            ))
        }
    };
    Ok(stream.unwrap_or(false).then(|| stream::StreamOptions {
        partial_images,
        quality: stream::quality_name(quality),
    }))
}

/// The common fields, validated like a native job, with the field names OpenAI users know.
pub fn validate_fields(
    fields: CommonFields,
    model: &ModelInfo,
    limits: &Limits,
) -> Result<GenerateRequest, OpenAiError> {
    validate_common(fields, model, limits).map_err(|error| {
        let error = rename_field(error, "width", "size");
        rename_field(error, "height", "size").into()
    })
}

/// A generation request -> its plan.
pub fn generation_plan(
    body: GenerationBody,
    model: &ModelInfo,
    limits: &Limits,
) -> Result<OpenAiPlan, OpenAiError> {
    let n = parse_n(body.n)?;
    let (width, height) = parse_size(body.size.as_deref())?;
    let want_url = parse_response_format(body.response_format.as_deref())?;
    let format = output::parse_format(body.output_format.as_deref(), body.output_compression)?;
    check_background(body.background.as_deref())?;
    let stream = parse_stream(body.stream, body.partial_images, body.quality.as_deref())?;
    let mut request = validate_fields(
        CommonFields {
            prompt: body.prompt,
            negative_prompt: body.negative_prompt,
            steps: body.steps,
            guidance_scale: body.guidance_scale,
            seed: body.seed,
            width,
            height,
            clip_skip: body.clip_skip,
            sampler: body.sampler,
        },
        model,
        limits,
    )?;
    let first = request.seeds.first().copied().unwrap_or_default();
    request.seeds = consecutive_seeds(first, n);
    Ok(OpenAiPlan {
        model: None,
        operation: Operation::ImageGeneration,
        request,
        format,
        want_url,
        stream,
    })
}

/// The multipart form, split into files and text fields.
#[derive(Debug, Default)]
pub struct EditForm {
    pub images: Vec<Vec<u8>>,
    pub mask: Option<Vec<u8>>,
    pub text: HashMap<String, String>,
}

impl EditForm {
    fn text(&self, name: &str) -> Option<&str> {
        self.text.get(name).map(String::as_str)
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, OpenAiError> {
        self.text(name)
            .map(|value| {
                value.trim().parse().map_err(|_| {
                    OpenAiError::invalid(
                        name,
                        "invalid_type",
                        format!("{name}: {value:?} is not a valid value"),
                    )
                })
            })
            .transpose()
    }
}

/// The size to run at when none is given: the input's, scaled down to the model's pixel count if larger,
/// rounded down to the size multiple.
fn auto_size(image: &DynamicImage, model: &ModelInfo) -> (i64, i64) {
    let (width, height) = (f64::from(image.width()), f64::from(image.height()));
    let native = (model.default_width * model.default_height) as f64;
    let scale = (native / (width * height)).sqrt().min(1.0);
    let multiple = model.size_multiple.max(1) as f64;
    let round = |side: f64| ((side * scale / multiple).floor() * multiple).max(multiple) as i64;
    (round(width), round(height))
}

/// An edit form -> its plan (decodes the images: call off the async workers).
pub fn edit_plan(
    form: EditForm,
    model: &ModelInfo,
    limits: &Limits,
) -> Result<OpenAiPlan, OpenAiError> {
    let image_bytes = match form.images.as_slice() {
        [] => {
            return Err(OpenAiError::invalid(
                "image",
                "missing_field",
                "image is required",
            ))
        }
        [one] => one,
        _ => {
            return Err(OpenAiError::invalid(
                "image",
                "too_many_images",
                "only one input image is supported",
            ))
        }
    };
    let n = parse_n(form.parsed("n")?)?;
    let (width, height) = parse_size(form.text("size"))?;
    let want_url = parse_response_format(form.text("response_format"))?;
    let format = output::parse_format(
        form.text("output_format"),
        form.parsed("output_compression")?,
    )?;
    check_background(form.text("background"))?;
    let stream = parse_stream(
        form.parsed("stream")?,
        form.parsed("partial_images")?,
        form.text("quality"),
    )?;
    let strength: Option<f64> = form.parsed("strength")?;
    if strength.is_some_and(|value| !(0.0..=1.0).contains(&value)) {
        return Err(OpenAiError::invalid(
            "strength",
            "invalid_strength",
            "strength must be between 0 and 1",
        ));
    }
    let picture = decode_bytes("image", image_bytes, limits)?;
    let mask = form
        .mask
        .as_deref()
        .map(|bytes| decode_bytes("mask", bytes, limits))
        .transpose()?;
    if let Some(mask) = &mask {
        if (mask.width(), mask.height()) != (picture.width(), picture.height()) {
            return Err(FieldError::new(
                "invalid_mask",
                "mask",
                format!(
                    "the mask is {}x{} but the image is {}x{}; they must match",
                    mask.width(),
                    mask.height(),
                    picture.width(),
                    picture.height()
                ),
            )
            .into());
        }
    }
    let (width, height) = match (width, height) {
        (Some(width), Some(height)) => (width, height),
        _ => auto_size(&picture, model),
    };
    let mut request = validate_fields(
        CommonFields {
            prompt: form.text("prompt").map(str::to_owned),
            negative_prompt: form.text("negative_prompt").map(str::to_owned),
            steps: form.parsed("steps")?,
            guidance_scale: form.parsed("guidance_scale")?,
            seed: form.parsed("seed")?,
            width: Some(width),
            height: Some(height),
            clip_skip: form.parsed("clip_skip")?,
            sampler: form.text("sampler").map(str::to_owned),
        },
        model,
        limits,
    )?;
    let first = request.seeds.first().copied().unwrap_or_default();
    request.seeds = consecutive_seeds(first, n);
    let operation = if mask.is_some() {
        Operation::ImageInpaint
    } else {
        Operation::ImageTransform
    };
    request.init = Some(images::init_image(InitSource {
        image: picture.to_rgb8(),
        mask: mask.as_ref().map(images::mask_from_image),
        width: request.width as u32,
        height: request.height as u32,
        mode: ResizeMode::Stretch,
        mask_blur: 0.0,
        strength,
        preserve_unmasked: true,
        image_field: "image",
        mask_field: "mask",
    })?);
    Ok(OpenAiPlan {
        model: None,
        operation,
        request,
        format,
        want_url,
        stream,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size(None).unwrap(), (None, None));
        assert_eq!(parse_size(Some("auto")).unwrap(), (None, None));
        assert_eq!(parse_size(Some("640x448")).unwrap(), (Some(640), Some(448)));
        for bad in ["640", "axb", "640x", "x448", "-8x8x8"] {
            assert_eq!(
                parse_size(Some(bad)).unwrap_err().param.as_deref(),
                Some("size"),
                "{bad}"
            );
        }
    }

    #[test]
    fn n_and_formats_are_bounded() {
        assert_eq!(parse_n(None).unwrap(), 1);
        assert_eq!(parse_n(Some(10)).unwrap(), 10);
        assert!(parse_n(Some(0)).is_err());
        assert!(parse_n(Some(11)).is_err());
        assert!(!parse_response_format(None).unwrap());
        assert!(parse_response_format(Some("url")).unwrap());
        assert!(parse_response_format(Some("file")).is_err());
        assert!(check_background(Some("transparent")).is_err());
        assert!(check_background(Some("opaque")).is_ok());
        assert!(parse_stream(Some(true), Some(4), None).is_err());
        assert_eq!(
            parse_stream(Some(true), Some(2), None)
                .unwrap()
                .unwrap()
                .partial_images,
            2
        );
        assert!(parse_stream(None, Some(2), None).unwrap().is_none());
    }

    #[test]
    fn auto_size_keeps_small_inputs_and_shrinks_large_ones() {
        let model = sd_engine::fake::FakeBackend::default_info();
        let small = DynamicImage::new_rgb8(300, 203);
        assert_eq!(auto_size(&small, &model), (296, 200));
        let large = DynamicImage::new_rgb8(2048, 1024);
        let (width, height) = auto_size(&large, &model);
        assert_eq!((width % 8, height % 8), (0, 0));
        assert!(width * height <= 512 * 512, "{width}x{height}");
        assert!(width > 2 * height - 16, "{width}x{height}");
    }
}
