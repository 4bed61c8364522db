//! `POST /v1/images/generations`: OpenAI's image generation request, mapped onto one engine request of `n`
//! images (seed, seed + 1, ...). Fields OpenAI defines that do not change a Stable Diffusion image (`model`,
//! `quality`, `style`, `user`, `moderation`, ...) are accepted and ignored; `negative_prompt`, `steps`,
//! `guidance_scale`, `seed`, `sampler` and `clip_skip` are extensions our engine understands.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use sd_core::pipeline::{GenerateRequest, ModelInfo};
use sd_engine::metadata::ImageFormat;
use sd_engine::Operation;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{OpenAiError, OpenAiErrorBody};
use super::output::{self, ImageData};
use super::stream;
use crate::compat::run::{self, Control};
use crate::compat::signing::UrlSigner;
use crate::compat::{consecutive_seeds, rename_field, validate_common, CommonFields, CompatError};
use crate::routes::jobs::not_ready;
use crate::state::AppState;
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

/// What the route settled on before generating.
pub struct Plan {
    /// The library model to run on (`None`: the default one).
    pub model: Option<String>,
    pub operation: Operation,
    pub request: GenerateRequest,
    pub format: ImageFormat,
    pub want_url: bool,
    pub stream: Option<stream::StreamOptions>,
}

/// Parses a JSON body, naming the field of a type error.
pub fn parse_body(bytes: &[u8]) -> Result<GenerationBody, OpenAiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| OpenAiError {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: format!("the body is not valid JSON: {error}"),
        param: None,
        code: "invalid_json".into(),
        retry_after: None,
    })?;
    if !value.is_object() {
        return Err(OpenAiError::invalid(
            "body",
            "invalid_type",
            "the body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let field = error.path().to_string();
        let message = format!("{field}: {}", error.into_inner());
        OpenAiError::invalid(&field, "invalid_type", message)
    })
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

fn plan(body: GenerationBody, model: &ModelInfo, limits: &Limits) -> Result<Plan, OpenAiError> {
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
    Ok(Plan {
        model: None,
        operation: Operation::ImageGeneration,
        request,
        format,
        want_url,
        stream,
    })
}

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
            status: axum::http::StatusCode::NOT_FOUND,
            message: unknown.to_string(),
            param: Some("model".into()),
            code: "model_not_found".into(),
            retry_after: None,
        }),
    }
}

pub fn model_or_not_ready(app: &AppState) -> Result<Arc<ModelInfo>, OpenAiError> {
    app.engine
        .model_info()
        .ok_or_else(|| not_ready(app.engine.readiness()).into())
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let body = body.map_err(crate::error::ApiError::from)?;
    let body = parse_body(&body)?;
    let named = library_model(&app, body.model.as_deref())?;
    let model = match &named {
        Some(name) => app
            .engine
            .model_info_named(name)
            .ok_or_else(|| OpenAiError::from(not_ready(app.engine.readiness())))?,
        None => model_or_not_ready(&app)?,
    };
    let mut plan = plan(body, &model, &app.config.limits)?;
    plan.model = named;
    respond(app, signer, headers, plan, stream::Kind::Generation).await
}

/// Runs a settled plan and answers with JSON or, when streaming, Server-Sent Events.
pub async fn respond(
    app: AppState,
    signer: Arc<UrlSigner>,
    headers: HeaderMap,
    plan: Plan,
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
        "created": crate::compat::signing::unix_now(),
        "data": data,
        "output_format": output::format_name(plan.format),
        "size": size,
        "background": "opaque",
    }))
    .into_response())
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
}
