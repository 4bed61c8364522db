//! `GET /sdapi/v1/progress`, `POST /sdapi/v1/interrupt`, `POST /sdapi/v1/skip`, acting on the A1111 request
//! in flight (the running one, else the oldest waiting). Other APIs' jobs are left alone: cancel those with
//! `DELETE /v1/jobs/{id}`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use sd_engine::{JobEvent, JobStatus};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{A1111State, Task};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ProgressQuery {
    #[serde(default)]
    pub skip_current_image: bool,
}

fn current(app: &AppState, state: &A1111State) -> Option<Arc<Task>> {
    state.current(|task| {
        task.control
            .current_job()
            .and_then(|id| app.engine.job(&id))
            .is_some_and(|job| job.status == JobStatus::Running)
    })
}

/// A1111: progress of the A1111 request in flight.
#[utoipa::path(get, path = "/sdapi/v1/progress", tag = "a1111",
    params(("skip_current_image" = Option<bool>, Query)),
    responses((status = 200, description = "`{progress, eta_relative, state: {skipped, interrupted, job, job_count, \
        job_timestamp, job_no, sampling_step, sampling_steps}, current_image, textinfo}`", body = Object)))]
pub async fn progress(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
    query: Result<Query<ProgressQuery>, QueryRejection>,
) -> Json<Value> {
    let skip_image = query.is_ok_and(|Query(query)| query.skip_current_image);
    let Some(task) = current(&app, &state) else {
        return Json(json!({
            "progress": 0.0,
            "eta_relative": 0.0,
            "state": {
                "skipped": false, "interrupted": false, "stopping_generation": false, "job": "",
                "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
            },
            "current_image": null,
            "textinfo": null,
            "current_task": null,
        }));
    };
    let mut progress = task.progress().clone();
    let job = task
        .control
        .current_job()
        .and_then(|id| app.engine.job(&id));
    if let Some(live) = job.as_ref().and_then(|job| job.progress) {
        progress.step = live.step;
        progress.steps = live.total;
    }
    let queued = job.as_ref().and_then(|job| job.position);
    let fraction = if progress.job_count == 0 {
        0.0
    } else {
        let within = if progress.steps > 0 {
            progress.step as f64 / progress.steps as f64
        } else {
            0.0
        };
        ((progress.job_no as f64 + within) / progress.job_count as f64).min(1.0)
    };
    let elapsed = task.started.elapsed().as_secs_f64();
    let eta_relative = if fraction > 0.0 {
        elapsed / fraction - elapsed
    } else {
        0.0
    };
    let current_image = if skip_image {
        None
    } else {
        job.as_ref()
            .filter(|job| job.status == JobStatus::Running)
            .and_then(|job| app.engine.subscribe(&job.id))
            .and_then(|subscription| {
                subscription
                    .snapshot
                    .into_iter()
                    .find_map(|event| match event {
                        JobEvent::Preview { image, .. } => Some(image.to_string()),
                        _ => None,
                    })
            })
    };
    let job_text = if progress.job_count > 1 {
        format!(
            "Batch {} out of {}",
            progress.job_no + 1,
            progress.job_count
        )
    } else {
        String::new()
    };
    Json(json!({
        "progress": fraction,
        "eta_relative": eta_relative,
        "state": {
            "skipped": task.control.is_skipped(),
            "interrupted": task.control.is_interrupted(),
            "stopping_generation": false,
            "job": job_text,
            "job_count": progress.job_count,
            "job_timestamp": task.timestamp,
            "job_no": progress.job_no,
            "sampling_step": progress.step,
            "sampling_steps": progress.steps,
        },
        "current_image": current_image,
        "textinfo": queued.map(|position| format!("Waiting in queue (position {position})")),
        "current_task": job.map(|job| job.id),
    }))
}

/// A1111: stop the A1111 request in flight (it answers with the images finished so far).
#[utoipa::path(post, path = "/sdapi/v1/interrupt", tag = "a1111", responses((status = 200, body = Object)))]
pub async fn interrupt(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
) -> Json<Value> {
    if let Some(task) = current(&app, &state) {
        task.control.interrupt(&app.engine);
    }
    Json(json!({}))
}

/// A1111: drop the batch in progress; later batches still run.
#[utoipa::path(post, path = "/sdapi/v1/skip", tag = "a1111", responses((status = 200, body = Object)))]
pub async fn skip(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
) -> Json<Value> {
    if let Some(task) = current(&app, &state) {
        task.control.skip(&app.engine);
    }
    Json(Value::Null)
}
