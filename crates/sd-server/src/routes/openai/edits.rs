//! `POST /v1/images/edits` (multipart/form-data): one `image` (or `image[]`), an optional `mask` (PNG whose
//! transparent pixels mark what to repaint) and a prompt. With a mask this is inpainting (unmasked pixels are
//! kept exactly); without, image-to-image. `size` defaults to the input's size, scaled down to the model's
//! native pixel count when larger. Extensions: the generation extras plus `strength`.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;

use super::error::OpenAiError;
use super::generations::{model_or_not_ready, respond};
use super::request::{edit_plan, EditForm};
use super::signing::UrlSigner;
use super::stream::Kind;
use crate::state::AppState;

async fn read_form(mut multipart: Multipart) -> Result<EditForm, OpenAiError> {
    let mut form = EditForm::default();
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
    let status = match error.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    OpenAiError::new(
        status,
        "invalid_body",
        format!("invalid multipart body: {}", error.body_text()),
    )
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
    let multipart = multipart.map_err(|rejection| {
        OpenAiError::new(rejection.status(), "invalid_body", rejection.body_text())
    })?;
    let model = model_or_not_ready(&app)?;
    let form = read_form(multipart).await?;
    let limits = app.config.limits.clone();
    // Decoding and resizing are CPU work: keep them off the async workers.
    let plan = app
        .cpu
        .run(move || edit_plan(form, &model, &limits))
        .await
        .map_err(|error| OpenAiError::internal(format!("validation task failed: {error}")))??;
    respond(app, signer, headers, plan, Kind::Edit).await
}
