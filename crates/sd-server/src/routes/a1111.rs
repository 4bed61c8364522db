//! AUTOMATIC1111's web UI API (`/sdapi/v1/*`) on the shared engine: `txt2img` and `img2img` answer
//! `{images, parameters, info}` as A1111 does; `progress`, `interrupt` and `skip` follow the A1111 requests in
//! flight; the probes clients call on connect (`samplers`, `sd-models`, `options`, ...) describe this worker.
//! Behind the same auth as every route (Bearer, or HTTP Basic with the key as password).

mod defaults;
mod fields;
mod generate;
mod inpaint;
mod masked;
mod probes;
mod progress;
mod request;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};

use crate::compat::CompatError;
use crate::error::{ApiError, FieldError};
use crate::extract::JsonRejection;
use crate::state::AppState;
use crate::sync_run::Control;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sdapi/v1/txt2img", post(generate::txt2img))
        .route("/sdapi/v1/img2img", post(generate::img2img))
        .route("/sdapi/v1/progress", get(progress::progress))
        .route("/sdapi/v1/interrupt", post(progress::interrupt))
        .route("/sdapi/v1/skip", post(progress::skip))
        .route(
            "/sdapi/v1/options",
            get(probes::options).post(probes::set_options),
        )
        .route("/sdapi/v1/samplers", get(probes::samplers))
        .route("/sdapi/v1/schedulers", get(probes::schedulers))
        .route("/sdapi/v1/sd-models", get(probes::sd_models))
        .route(
            "/sdapi/v1/refresh-checkpoints",
            post(probes::refresh_checkpoints),
        )
        .route("/sdapi/v1/cmd-flags", get(probes::cmd_flags))
        .route("/sdapi/v1/memory", get(probes::memory))
        .route("/sdapi/v1/png-info", post(probes::png_info))
        .route("/sdapi/v1/embeddings", get(probes::embeddings))
        .route("/sdapi/v1/scripts", get(probes::scripts))
        .route("/sdapi/v1/upscalers", get(probes::upscalers))
        .merge(probes::empty_lists())
        .merge(probes::no_ops())
        .layer(Extension(Arc::new(A1111State::default())))
}

/// The A1111 routes' part of `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        generate::txt2img, generate::img2img, progress::progress, progress::interrupt, progress::skip,
        probes::options, probes::set_options, probes::samplers, probes::schedulers, probes::sd_models, probes::refresh_checkpoints,
        probes::cmd_flags, probes::memory, probes::png_info, probes::embeddings, probes::scripts,
        probes::upscalers,
    ),
    modifiers(&SimpleRoutes),
    tags((name = "a1111", description = "AUTOMATIC1111 web UI API (/sdapi/v1)"))
)]
pub struct A1111Api;

/// Documents the routes that answer a constant (empty lists, no-op refreshes).
struct SimpleRoutes;

impl utoipa::Modify for SimpleRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder};
        use utoipa::openapi::ResponseBuilder;
        let operation = |summary: &str, description: &str| {
            OperationBuilder::new()
                .tag("a1111")
                .summary(Some(summary))
                .response(
                    "200",
                    ResponseBuilder::new().description(description).build(),
                )
                .build()
        };
        for path in probes::EMPTY_LISTS {
            openapi.paths.add_path_operation(
                path,
                vec![HttpMethod::Get],
                operation("A1111: a list this worker has nothing in", "`[]`"),
            );
        }
        openapi.paths.add_path_operation(
            "/sdapi/v1/loras",
            vec![HttpMethod::Get],
            operation(
                "A1111: the LoRAs in the --lora-dir folders",
                "`[{name, alias, path, metadata}]`",
            ),
        );
        openapi.paths.add_path_operation(
            "/v1/loras",
            vec![HttpMethod::Get],
            operation(
                "The LoRAs `<lora:NAME:WEIGHT>` and the `loras` field can use",
                "`{\"loras\":[{\"name\"}]}`",
            ),
        );
        for path in probes::NO_OPS {
            openapi.paths.add_path_operation(
                path,
                vec![HttpMethod::Post],
                operation("A1111: nothing to refresh or reload", "`null`"),
            );
        }
    }
}

/// What the A1111 layer remembers between requests: the requests in flight (for `progress`, `interrupt`,
/// `skip`) and the options clients set.
#[derive(Debug, Default)]
pub struct A1111State {
    tasks: Mutex<Vec<Arc<Task>>>,
    options: Mutex<Map<String, Value>>,
}

impl A1111State {
    fn tasks(&self) -> MutexGuard<'_, Vec<Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn options(&self) -> MutexGuard<'_, Map<String, Value>> {
        self.options.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The A1111 request that runs now, or else the oldest waiting one (A1111 runs them in order).
    fn current(&self, running: impl Fn(&Task) -> bool) -> Option<Arc<Task>> {
        let tasks = self.tasks();
        tasks
            .iter()
            .find(|task| running(task))
            .or_else(|| tasks.first())
            .cloned()
    }

    fn begin(self: &Arc<Self>, job_count: usize) -> TaskGuard {
        let task = Arc::new(Task {
            control: Arc::new(Control::default()),
            timestamp: job_timestamp(SystemTime::now()),
            started: Instant::now(),
            progress: Mutex::new(TaskProgress {
                job_count,
                ..TaskProgress::default()
            }),
        });
        self.tasks().push(Arc::clone(&task));
        TaskGuard {
            state: Arc::clone(self),
            task,
        }
    }
}

/// One `txt2img`/`img2img` request in flight.
#[derive(Debug)]
pub struct Task {
    control: Arc<Control>,
    /// A1111's `job_timestamp`: `%Y%m%d%H%M%S`.
    timestamp: String,
    started: Instant,
    progress: Mutex<TaskProgress>,
}

#[derive(Clone, Debug, Default)]
struct TaskProgress {
    job_no: usize,
    job_count: usize,
    step: usize,
    steps: usize,
}

impl Task {
    fn progress(&self) -> MutexGuard<'_, TaskProgress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes the task from the list when the request ends, however it ends.
struct TaskGuard {
    state: Arc<A1111State>,
    task: Arc<Task>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.state
            .tasks()
            .retain(|task| !Arc::ptr_eq(task, &self.task));
    }
}

/// `%Y%m%d%H%M%S` in UTC.
fn job_timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

/// Errors of the A1111 routes: FastAPI's `detail` plus our `error` object.
#[derive(Debug)]
pub struct A1111Error(pub CompatError);

impl<E: Into<CompatError>> From<E> for A1111Error {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

/// A refused JSON body: a body that is not an object is malformed for A1111 (400 `invalid_json`); the rest
/// as the native API.
impl From<JsonRejection> for A1111Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::NotAnObject => {
                Self(ApiError::bad_request("invalid_json", "the body must be a JSON object").into())
            }
            other => Self(ApiError::from(other).into()),
        }
    }
}

impl A1111Error {
    fn invalid(error: FieldError) -> Self {
        Self(ApiError::Invalid(error).into())
    }
}

impl IntoResponse for A1111Error {
    fn into_response(self) -> Response {
        let error = self.0;
        let status = error.status();
        if status.is_server_error() {
            tracing::warn!(code = %error.code(), %error, "A1111 request failed");
        }
        let message = error.to_string();
        let body = json!({
            "error": {"code": error.code(), "message": message, "field": error.field()},
            "detail": message,
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = error.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_timestamps_are_a1111_style() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(job_timestamp(time), "20231114221320");
    }
}
