//! The native job API: submit, list, status, stream, image, cancel.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sd_engine::{CancelError, CancelOutcome, ImageError, JobSnapshot, JobStatus, SubmitError};
use serde::Deserialize;
use utoipa::IntoParams;

// The wire types live in `sd-api-types` (shared with the client SDK); re-exported under their old paths.
pub use sd_api_types::{CancelResponse, JobAccepted, JobList, JobResultView, JobView};

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::validate::{parse_job_body, validate, JobBody, ValidJob};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status).delete(cancel))
        .route("/v1/jobs/{id}/stream", get(stream))
        .route("/v1/jobs/{id}/images/{index}", get(image))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// At most this many jobs, newest first (default 50, max 1000).
    pub limit: Option<usize>,
}

fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// The API's view of a job (`JobView` is a foreign type here, hence a function rather than `From`).
pub fn job_view(job: JobSnapshot) -> JobView {
    let result = (job.status == JobStatus::Succeeded).then(|| JobResultView {
        images: (0..job.image_count)
            .map(|index| format!("/v1/jobs/{}/images/{index}", job.id))
            .collect(),
        seeds: job.seeds.clone(),
        vae_tiled: job.vae_tiled.unwrap_or(false),
        prompt: job.prompt.clone().unwrap_or_default().0,
        negative_prompt: job.prompt.clone().unwrap_or_default().1,
        warnings: job.warnings.clone(),
        model: job.model.clone().unwrap_or_default().0,
        model_hash: job.model.clone().and_then(|(_, hash)| hash),
    });
    JobView {
        position: job.position,
        progress: job.progress,
        seeds: job.seeds,
        width: job.width,
        height: job.height,
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        finished_at: job.finished_at.map(rfc3339),
        result,
        error: job.error,
        timings: job.timings,
        operation: job.operation,
        status: job.status,
        id: job.id,
    }
}

/// 422 `unknown_model` on the `model` field, listing the models that exist.
pub fn unknown_model(unknown: &sd_engine::UnknownModel) -> crate::error::FieldError {
    crate::error::FieldError::new("unknown_model", "model", unknown.to_string())
}

/// Queue a job.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobBody,
    responses(
        (status = 202, description = "Queued", body = JobAccepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 503, description = "Model loading or shutting down", body = ErrorBody),
    ))]
pub async fn submit(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    if !crate::guard::is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let parsed = parse_job_body(&body)?;
    // `model` routes the job on a fleet gateway; a single-model worker ignores it.
    let model_name = parsed
        .model
        .as_ref()
        .and_then(|model| model.as_str())
        .map(str::to_owned);
    let model = match &model_name {
        Some(name) => match app.engine.model_info_named(name) {
            Some(model) => model,
            None if app.engine.model_info().is_none() => {
                return Err(ApiError::not_ready(app.engine.readiness()))
            }
            None => {
                return Err(unknown_model(&sd_engine::UnknownModel {
                    name: name.clone(),
                    available: app.engine.model_names(),
                })
                .into())
            }
        },
        None => match app.engine.model_info() {
            Some(model) => model,
            None => return Err(ApiError::not_ready(app.engine.readiness())),
        },
    };
    let limits = app.config.limits.clone();
    let ValidJob(request) =
        if parsed.operation == Some(crate::validate::OperationName::ImageGeneration) {
            validate(parsed, &model, &limits)?
        } else {
            // Decoding and resizing input images is CPU work: keep it off the async workers.
            app.cpu
                .run(move || validate(parsed, &model, &limits))
                .await
                .map_err(|error| ApiError::Internal(format!("validation task failed: {error}")))??
        };
    crate::validate::check_lora_tags(&request.generate.prompt, &app.config.loras)?;
    let seeds = request.generate.seeds.clone();
    let submitted = app
        .engine
        .submit_to(model_name.as_deref(), request)
        .map_err(|error| match error {
            SubmitError::QueueFull { retry_after } => ApiError::QueueFull { retry_after },
            SubmitError::ResultsFull { retry_after } => ApiError::ResultsFull { retry_after },
            SubmitError::NotReady => ApiError::not_ready(app.engine.readiness()),
            SubmitError::ShuttingDown => ApiError::ShuttingDown,
            SubmitError::Unavailable(reason) => ApiError::QueueUnavailable(reason),
            SubmitError::UnknownModel(unknown) => unknown_model(&unknown).into(),
        })?;
    let status_url = format!("/v1/jobs/{}", submitted.id);
    let accepted = JobAccepted {
        sse_url: format!("/v1/jobs/{}/stream", submitted.id),
        status_url: status_url.clone(),
        job_id: submitted.id,
        status: JobStatus::Queued,
        position: submitted.position,
        seeds,
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url)],
        Json(accepted),
    )
        .into_response())
}

/// Recent jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(50).min(1000);
    Ok(Json(JobList {
        jobs: app.engine.jobs(limit).into_iter().map(job_view).collect(),
    }))
}

/// A job's status, position, progress, result or error, and timings.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, description = "The result expired (`job_expired`)", body = ErrorBody)))]
pub async fn status(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    let Path(id) = id?;
    let job = app.engine.job(&id).ok_or_else(|| unknown_job(&app, &id))?;
    Ok(Json(job_view(job)))
}

/// Server-Sent Events: `queued`, `started`, `progress`, `preview`, then `complete`, `error` or `cancelled`,
/// then `data: [DONE]`. Late subscribers first get the job's current state (a finished job's result).
#[utoipa::path(get, path = "/v1/jobs/{id}/stream", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 200, description = "text/event-stream; each `data` is a JobEvent, the last is `[DONE]`",
            content_type = "text/event-stream", body = sd_engine::JobEvent),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, description = "The result expired (`job_expired`)", body = ErrorBody)))]
pub async fn stream(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let subscription = app
        .engine
        .subscribe(&id)
        .ok_or_else(|| unknown_job(&app, &id))?;
    let events = Sse::new(crate::sse::job_events(subscription)).keep_alive(KeepAlive::default());
    Ok((
        [
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        events,
    )
        .into_response())
}

/// Image `index` of a succeeded job, as PNG.
#[utoipa::path(get, path = "/v1/jobs/{id}/images/{index}", tag = "jobs",
    params(("id" = String, Path), ("index" = usize, Path)),
    responses(
        (status = 200, description = "PNG", content_type = "image/png", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, description = "The result expired (`job_expired`)", body = ErrorBody),
        (status = 409, description = "The job has not succeeded", body = ErrorBody)))]
pub async fn image(
    State(app): State<AppState>,
    path: Result<Path<(String, usize)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((id, index)) = path?;
    let png = app.engine.image(&id, index).map_err(|error| match error {
        ImageError::NotFound => unknown_job(&app, &id),
        ImageError::NotSucceeded(status) => ApiError::Conflict {
            code: "job_not_succeeded",
            message: format!("job {id} has no images: it is {}", status.as_str()),
        },
        ImageError::OutOfRange(count) => {
            ApiError::NotFound(format!("job {id} has {count} images; no image {index}"))
        }
    })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// Cancel: a waiting job at once (200), a running one after its current step (202).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 200, description = "Was waiting; now cancelled", body = CancelResponse),
        (status = 202, description = "Running; stops after the current step", body = CancelResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, description = "The result expired (`job_expired`)", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody)))]
pub async fn cancel(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let outcome = app.engine.cancel(&id).map_err(|error| match error {
        CancelError::NotFound => unknown_job(&app, &id),
        CancelError::AlreadyFinished(status) => ApiError::Conflict {
            code: "job_finished",
            message: format!("job {id} already finished: it is {}", status.as_str()),
        },
    })?;
    let (code, status) = match outcome {
        CancelOutcome::Cancelled => (StatusCode::OK, "cancelled"),
        CancelOutcome::Cancelling => (StatusCode::ACCEPTED, "cancelling"),
    };
    Ok((
        code,
        Json(CancelResponse {
            job_id: id,
            status: status.to_owned(),
        }),
    )
        .into_response())
}

/// 410 `job_expired` for a job whose result was dropped (TTL or result budget), else 404 `job_not_found`.
fn unknown_job(app: &AppState, id: &str) -> ApiError {
    if app.engine.expired(id) {
        ApiError::JobExpired(format!(
            "job {id} finished and its result was dropped after --result-ttl; fetch results sooner"
        ))
    } else {
        ApiError::JobNotFound(format!("no job {id}"))
    }
}
