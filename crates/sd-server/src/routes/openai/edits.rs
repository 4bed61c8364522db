//! `POST /v1/images/edits` (multipart/form-data): one `image` (or `image[]`), an optional `mask` (PNG whose
//! transparent pixels mark what to repaint) and a prompt. With a mask this is inpainting (unmasked pixels are
//! kept exactly); without, image-to-image. `size` defaults to the input's size, scaled down to the model's
//! native pixel count when larger. Extensions: the generation extras plus `strength`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use image::DynamicImage;
use sd_core::pipeline::ModelInfo;
use sd_engine::Operation;

use super::error::OpenAiError;
use super::generations::{
    check_background, model_or_not_ready, parse_n, parse_response_format, parse_size, parse_stream,
    respond, validate_fields, Plan,
};
use super::output;
use super::stream::Kind;
use crate::compat::signing::UrlSigner;
use crate::compat::{consecutive_seeds, CommonFields};
use crate::error::FieldError;
use crate::images::{self, decode_bytes, InitSource, ResizeMode};
use crate::state::AppState;
use crate::validate::Limits;

/// The multipart form, split into files and text fields.
#[derive(Debug, Default)]
struct Form {
    images: Vec<Vec<u8>>,
    mask: Option<Vec<u8>>,
    text: HashMap<String, String>,
}

impl Form {
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

async fn read_form(mut multipart: Multipart) -> Result<Form, OpenAiError> {
    let mut form = Form::default();
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" | "image[]" => form
                .images
                .push(field.bytes().await.map_err(multipart_error)?.to_vec()),
            "mask" => form.mask = Some(field.bytes().await.map_err(multipart_error)?.to_vec()),
            _ => {
                let value = field.text().await.map_err(multipart_error)?;
                form.text.insert(name, value);
            }
        }
    }
    Ok(form)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> OpenAiError {
    let status = error.status();
    OpenAiError {
        status: if status == StatusCode::PAYLOAD_TOO_LARGE {
            status
        } else {
            StatusCode::BAD_REQUEST
        },
        message: format!("invalid multipart body: {}", error.body_text()),
        param: None,
        code: "invalid_body".into(),
        retry_after: None,
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

fn plan(form: Form, model: &ModelInfo, limits: &Limits) -> Result<Plan, OpenAiError> {
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
    Ok(Plan {
        operation,
        request,
        format,
        want_url,
        stream,
    })
}

/// OpenAI: edit an image (multipart/form-data).
#[utoipa::path(post, path = "/v1/images/edits", tag = "openai",
    request_body(content = Object, content_type = "multipart/form-data", description = "`image` (or `image[]`, \
        one file), `mask` (PNG; transparent = repaint), `prompt`, `n`, `size` (`WxH` or `auto`: the input's size, \
        scaled down to the model's native pixel count), `response_format`, `output_format`, `output_compression`, \
        `stream`, `partial_images`; extensions `negative_prompt`, `steps`, `guidance_scale`, `seed`, `sampler`, \
        `clip_skip`, `strength` (default 1.0 with a mask, 0.8 without)"),
    responses(
        (status = 200, description = "As for generations; streaming events are `image_edit.*`", body = Object),
        (status = 400, description = "Invalid parameter", body = super::error::OpenAiErrorBody),
        (status = 401, description = "Missing or wrong API key", body = super::error::OpenAiErrorBody),
        (status = 429, description = "Queue full", body = super::error::OpenAiErrorBody),
    ))]
pub async fn edit(
    State(app): State<AppState>,
    Extension(signer): Extension<Arc<UrlSigner>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, OpenAiError> {
    let multipart = multipart.map_err(|rejection| OpenAiError {
        status: rejection.status(),
        message: rejection.body_text(),
        param: None,
        code: "invalid_body".into(),
        retry_after: None,
    })?;
    let model = model_or_not_ready(&app)?;
    let form = read_form(multipart).await?;
    let limits = app.config.limits.clone();
    // Decoding and resizing are CPU work: keep them off the async workers.
    let plan = app
        .cpu
        .run(move || plan(form, &model, &limits))
        .await
        .map_err(|error| OpenAiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("validation task failed: {error}"),
            param: None,
            code: "internal_error".into(),
            retry_after: None,
        })??;
    respond(app, signer, headers, plan, Kind::Edit).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
