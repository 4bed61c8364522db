//! `POST /v1/images/generations`: OpenAI's image generation request (see [`super::request`] for how the body
//! becomes a plan), answered as JSON or, with `stream: true`, as Server-Sent Events.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use sd_core::pipeline::ModelInfo;
use serde_json::json;

use super::error::{OpenAiError, OpenAiErrorBody};
use super::output::{self, ImageData};
use super::request::{generation_plan, GenerationBody, OpenAiPlan};
use super::signing::UrlSigner;
use super::stream;
use crate::compat::CompatError;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::sync_run::{self as run, Control};

/// The library model an OpenAI `model` names: `None` for the default (absent, OpenAI's own model names, or a
/// worker without a library); a name that is none of these is 404 `model_not_found` listing the models.
pub fn library_model(app: &AppState, name: Option<&str>) -> Result<Option<String>, OpenAiError> {
    let Some(name) = name.map(str::trim).filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    if app.engine.model_names().is_empty()
        || name.starts_with("dall-e")
        || name.starts_with("gpt-image")
    {
        return Ok(None);
    }
    match app.engine.resolve_model(name) {
        Ok(resolved) => Ok(Some(resolved)),
        Err(unknown) => Err(OpenAiError {
            param: Some("model".into()),
            ..OpenAiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "model_not_found",
                unknown.to_string(),
            )
        }),
    }
}

pub fn model_or_not_ready(app: &AppState) -> Result<Arc<ModelInfo>, OpenAiError> {
    app.engine
        .model_info()
        .ok_or_else(|| ApiError::not_ready(app.engine.readiness()).into())
}

/// OpenAI: generate images.
#[utoipa::path(post, path = "/v1/images/generations", tag = "openai", request_body = GenerationBody,
    responses(
        (status = 200, description = "`{created, data: [{b64_json | url, revised_prompt}], output_format, size}`; \
            with `stream: true`, Server-Sent Events `image_generation.partial_image` and \
            `image_generation.completed` (OpenAI's shapes), then `data: [DONE]`", body = Object),
        (status = 400, description = "Invalid parameter (`param` names it)", body = OpenAiErrorBody),
        (status = 401, description = "Missing or wrong API key", body = OpenAiErrorBody),
        (status = 429, description = "Queue full; see Retry-After", body = OpenAiErrorBody),
        (status = 503, description = "Model loading or shutting down", body = OpenAiErrorBody),
    ))]
pub async fn generate(
    State(app): State<AppState>,
    Extension(signer): Extension<Arc<UrlSigner>>,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody<GenerationBody, OpenAiError>,
) -> Result<Response, OpenAiError> {
    let named = library_model(&app, body.model.as_deref())?;
    let model = match &named {
        Some(name) => app
            .engine
            .model_info_named(name)
            .ok_or_else(|| OpenAiError::from(ApiError::not_ready(app.engine.readiness())))?,
        None => model_or_not_ready(&app)?,
    };
    let mut plan = generation_plan(body, &model, &app.config.limits)?;
    plan.model = named;
    respond(app, signer, headers, plan, stream::Kind::Generation).await
}

/// Runs a settled plan and answers with JSON or, when streaming, Server-Sent Events.
pub async fn respond(
    app: AppState,
    signer: Arc<UrlSigner>,
    headers: HeaderMap,
    plan: OpenAiPlan,
    kind: stream::Kind,
) -> Result<Response, OpenAiError> {
    let size = format!("{}x{}", plan.request.width, plan.request.height);
    if let Some(options) = plan.stream {
        return Ok(stream::respond(
            app,
            plan.model,
            plan.operation,
            plan.request,
            plan.format,
            options,
            kind,
        ));
    }
    let prompt = plan.request.prompt.clone();
    let outcome = run::run(
        &app.engine,
        plan.model.as_deref(),
        &app.config.limits,
        plan.operation,
        plan.request,
        usize::MAX,
        Arc::new(Control::default()),
        &mut |_| {},
    )
    .await?;
    if outcome.interrupted {
        return Err(CompatError::Cancelled.into());
    }
    let data: Vec<ImageData> = if plan.want_url {
        output::urls(
            &outcome.images,
            plan.format,
            &signer,
            &headers,
            app.engine.config().result_ttl,
            app.config.trust_forwarded,
        )
        .into_iter()
        .map(|url| ImageData {
            b64_json: None,
            url: Some(url),
            revised_prompt: prompt.clone(),
        })
        .collect()
    } else {
        output::base64_images(&app.cpu, outcome.images, plan.format)
            .await?
            .into_iter()
            .map(|b64| ImageData {
                b64_json: Some(b64),
                url: None,
                revised_prompt: prompt.clone(),
            })
            .collect()
    };
    Ok(Json(json!({
        "created": super::signing::unix_now(),
        "data": data,
        "output_format": output::format_name(plan.format),
        "size": size,
        "background": "opaque",
    }))
    .into_response())
}
