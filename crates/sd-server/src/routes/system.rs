//! Liveness, readiness, model info, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sd_core::schedulers::SamplerKind;
use sd_engine::Readiness;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
// The wire types live in `sd-api-types` (shared with the client SDK); re-exported under their old paths.
pub use sd_api_types::{Defaults, Health, Info, QueueInfo, ReadyStatus};

/// Routes that answer without an API key.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/embeddings", get(embeddings))
        .route("/v1/loras", get(loras))
        .route("/sdapi/v1/loras", get(a1111_loras))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

/// Liveness: 200 as soon as the process listens.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 once the model loaded and the worker accepts jobs, else 503 with the reason.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, body = ReadyStatus), (status = 503, body = ReadyStatus)))]
pub async fn ready(State(app): State<AppState>) -> Response {
    let accepting = app.engine.occupancy().accepting;
    let (code, body) = match app.engine.readiness() {
        Readiness::Ready(info) if accepting => (
            StatusCode::OK,
            ReadyStatus {
                ready: true,
                status: "ready".into(),
                reason: None,
                model: Some(info.model.clone()),
            },
        ),
        Readiness::Ready(info) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyStatus {
                ready: false,
                status: "stopping".into(),
                reason: Some("shutting down".into()),
                model: Some(info.model.clone()),
            },
        ),
        Readiness::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyStatus {
                ready: false,
                status: "loading".into(),
                reason: Some(
                    app.engine
                        .loading_detail()
                        .unwrap_or_else(|| "loading model".into()),
                ),
                model: None,
            },
        ),
        Readiness::Failed(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyStatus {
                ready: false,
                status: "failed".into(),
                reason: Some(reason),
                model: None,
            },
        ),
    };
    (code, Json(body)).into_response()
}

/// One textual-inversion embedding the model can use.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingView {
    /// The word that stands for it in prompts (its file name without extension).
    pub name: String,
    /// Tokens it takes in the prompt.
    pub vectors: usize,
    /// Width of its vectors (both encoders' together for SDXL).
    pub shape: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedEmbeddingView {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Embeddings {
    pub embeddings: Vec<EmbeddingView>,
    /// Files in the embedding folders that this model cannot use, and why.
    pub skipped: Vec<SkippedEmbeddingView>,
}

/// The textual-inversion embeddings loaded from `--embeddings-dir`.
#[utoipa::path(get, path = "/v1/embeddings", tag = "system",
    responses((status = 200, body = Embeddings), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn embeddings(State(app): State<AppState>) -> Result<Json<Embeddings>, ApiError> {
    let Some(model) = app.engine.model_info() else {
        return Err(ApiError::not_ready(app.engine.readiness()));
    };
    let listing = &model.embeddings;
    Ok(Json(Embeddings {
        embeddings: listing
            .loaded
            .iter()
            .map(|(name, info)| EmbeddingView {
                name: name.clone(),
                vectors: info.vectors,
                shape: info.shape,
            })
            .collect(),
        skipped: listing
            .reasons
            .iter()
            .map(|(name, reason)| SkippedEmbeddingView {
                name: name.clone(),
                reason: reason.clone(),
            })
            .collect(),
    }))
}

/// The model, its defaults, samplers, request limits and the queue.
#[utoipa::path(get, path = "/v1/info", tag = "system",
    responses((status = 200, body = Info), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn info(State(app): State<AppState>) -> Result<Json<Info>, ApiError> {
    let Some(model) = app.engine.model_info() else {
        return Err(ApiError::not_ready(app.engine.readiness()));
    };
    let load = app.engine.occupancy();
    Ok(Json(Info {
        model: model.model.clone(),
        family: model.family.to_string(),
        prediction_type: model.prediction_type.to_string(),
        device: model.device.clone(),
        dtype: model.dtype.to_string(),
        inpainting: model.inpainting,
        size_multiple: model.size_multiple,
        defaults: Defaults {
            width: model.default_width,
            height: model.default_height,
            steps: model.default_steps,
            guidance_scale: model.default_guidance,
            sampler: model.default_sampler.to_string(),
        },
        samplers: SamplerKind::names().into_iter().map(String::from).collect(),
        operations: ["image_generation", "image_transform", "image_inpaint"]
            .map(String::from)
            .to_vec(),
        limits: app.config.limits.clone(),
        queue: QueueInfo {
            max: app.engine.config().max_queue,
            depth: load.queued,
            running: load.running,
        },
        version: app.config.version.clone(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.engine.metrics(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object),
        (status = 401, body = ErrorBody)))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
    )
        .into_response()
}

/// `GET /v1/loras`: the LoRAs `<lora:NAME:WEIGHT>` and the `loras` field can use (the `--lora-dir` folders,
/// read on every call).
async fn loras(State(app): State<AppState>) -> Json<sd_api_types::LoraList> {
    let loras = app
        .config
        .loras
        .list()
        .into_iter()
        .map(|e| sd_api_types::LoraEntry { name: e.name })
        .collect();
    Json(sd_api_types::LoraList { loras })
}

/// `GET /sdapi/v1/loras`: A1111's list (`name`, `alias`, `path`, `metadata`).
async fn a1111_loras(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(
        app.config
            .loras
            .list()
            .into_iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "alias": e.name,
                    "path": e.path.display().to_string(),
                    "metadata": {},
                })
            })
            .collect(),
    ))
}
