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

/// The model id clients see: the model's folder or repository name.
fn model_id(app: &AppState) -> Option<String> {
    app.engine
        .model_info()
        .map(|info| sd_engine::metadata::model_name(&info.model))
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "sd-worker"})
}

/// OpenAI: the loaded model, in OpenAI's list format.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "`{object: \"list\", data: [{id, object: \"model\", created, owned_by}]}`", body = Object),
        (status = 401, body = error::OpenAiErrorBody)))]
async fn models(State(app): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = model_id(&app).iter().map(|id| model_object(id)).collect();
    Json(json!({"object": "list", "data": data}))
}

/// OpenAI: one model.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = error::OpenAiErrorBody)))]
async fn model(
    State(app): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    match model_id(&app) {
        Some(loaded) if loaded == id => Ok(Json(model_object(&loaded))),
        _ => Err(OpenAiError {
            param: Some("model".into()),
            ..OpenAiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "model_not_found",
                format!("The model {id:?} does not exist"),
            )
        }),
    }
}
