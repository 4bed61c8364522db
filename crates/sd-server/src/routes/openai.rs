//! OpenAI's Images API on the shared engine: `POST /v1/images/generations`, `POST /v1/images/edits`,
//! `GET /v1/models`, and `GET /v1/images/files/{job}/{file}` behind the signed URLs that `response_format: url`
//! hands out. Same queue, limits, auth and cancellation as the native API; errors in OpenAI's shape.

mod edits;
pub mod error;
mod generations;
mod output;
mod request;
pub mod signing;
mod stream;

use std::sync::Arc;

use axum::extract::State;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sd_engine::ModelEntry;
use serde_json::{json, Value};

use self::error::OpenAiError;
use self::signing::UrlSigner;
use crate::state::AppState;

/// The OpenAI routes with their own auth and error shaping (an unauthorised OpenAI call gets an OpenAI error).
/// The signed image files need no key.
pub fn routes(state: AppState) -> Router<AppState> {
    let signer = Arc::new(UrlSigner::new());
    let protected = Router::new()
        .route("/v1/images/generations", post(generations::generate))
        .route("/v1/images/edits", post(edits::edit))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .layer(from_fn_with_state(state, crate::auth::require_api_key));
    Router::new()
        .route("/v1/images/files/{job_id}/{file}", get(output::file))
        .merge(protected)
        .layer(from_fn(error::reshape_errors))
        .layer(Extension(signer))
}

/// The OpenAI routes' part of `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(generations::generate, edits::edit, models, model, output::file),
    components(schemas(request::GenerationBody, error::OpenAiErrorBody, error::OpenAiErrorDetail)),
    tags((name = "openai", description = "OpenAI Images API"))
)]
pub struct OpenAiApi;

/// One model in the listing: OpenAI's `{id, object, created, owned_by}` plus this worker's fields
/// (`family`, `hash` (A1111's short hash, null until hashed), `sha256`, `loaded`, `default`, `format`, `source`).
fn model_object(entry: &ModelEntry) -> Value {
    json!({
        "id": entry.model.name,
        "object": "model",
        "created": 0,
        "owned_by": "sd-worker",
        "family": entry.model.family,
        "hash": entry.hash.as_ref().map(|hash| hash.short().to_owned()),
        "sha256": entry.hash.as_ref().map(|hash| hash.sha256.clone()),
        "loaded": entry.loaded,
        "default": entry.default,
        "format": entry.model.format.as_str(),
        "source": entry.model.path,
    })
}

/// The models requests may name (the library, or the one model), in OpenAI's list format with this worker's
/// extra fields; the native API and OpenAI clients share this route.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "`{object: \"list\", data: [{id, object: \"model\", created, owned_by, family, hash, sha256, loaded, default, format, source}]}`", body = Object),
        (status = 401, body = error::OpenAiErrorBody)))]
async fn models(State(app): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = app.engine.models().iter().map(model_object).collect();
    Json(json!({"object": "list", "data": data}))
}

/// One model (by name, or any name A1111 accepts).
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = error::OpenAiErrorBody)))]
async fn model(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let models = app.engine.models();
    // Without a library every name means the one model, so only its own name finds it here.
    let name = if app.engine.model_names().is_empty() {
        None
    } else {
        app.engine.resolve_model(&id).ok()
    };
    let found = models
        .iter()
        .find(|entry| Some(&entry.model.name) == name.as_ref() || entry.model.name == id);
    match found {
        Some(entry) => Ok(Json(model_object(entry))),
        None => Err(OpenAiError {
            param: Some("model".into()),
            ..OpenAiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "The model {id:?} does not exist; models: {}",
                    models
                        .iter()
                        .map(|entry| entry.model.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }),
    }
}
