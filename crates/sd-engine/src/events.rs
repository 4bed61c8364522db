//! Job events as subscribers see them, and [`Subscription`]: a snapshot of a job's current state followed by
//! its live events, taken under the engine lock so nothing falls in between.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::job::{JobRecord, JobStatus, JobTimings};

/// One event of a job's life. Serialized with a `type` tag that matches the SSE event name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// Waiting; `position` 1 starts next. Sent again whenever the position changes.
    Queued {
        position: usize,
    },
    Started {},
    /// The job waits while the model it names loads (a switch); `progress` events follow once it runs.
    Loading {
        model: String,
    },
    Progress {
        step: usize,
        total: usize,
        percent: f64,
        eta_ms: u64,
    },
    /// A small preview of the first image, base64 PNG.
    Preview {
        step: usize,
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        image: Arc<str>,
    },
    /// Base64 PNG images, one per seed.
    Complete {
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
        images: Vec<Arc<str>>,
        seeds: Vec<u64>,
        timings: JobTimings,
    },
    Error {
        code: String,
        message: String,
    },
    Cancelled {},
}

impl JobEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::Started {} => "started",
            Self::Loading { .. } => "loading",
            Self::Progress { .. } => "progress",
            Self::Preview { .. } => "preview",
            Self::Complete { .. } => "complete",
            Self::Error { .. } => "error",
            Self::Cancelled {} => "cancelled",
        }
    }

    /// The last event of a job: after it the stream ends.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Complete { .. } | Self::Error { .. } | Self::Cancelled {}
        )
    }
}

/// What a subscriber gets: the job's state so far, then (for a job still going) its live events.
pub struct Subscription {
    pub snapshot: Vec<JobEvent>,
    pub live: Option<broadcast::Receiver<JobEvent>>,
}

pub(crate) fn base64_png(png: &[u8]) -> Arc<str> {
    base64::engine::general_purpose::STANDARD.encode(png).into()
}

/// Events that bring a late subscriber up to date with `record`.
pub(crate) fn catch_up(record: &JobRecord, position: Option<usize>) -> Vec<JobEvent> {
    match record.status {
        JobStatus::Queued => vec![JobEvent::Queued {
            position: position.unwrap_or(1),
        }],
        JobStatus::Running => {
            let mut events = vec![JobEvent::Started {}];
            if let Some(progress) = record.progress {
                events.push(JobEvent::Progress {
                    step: progress.step,
                    total: progress.total,
                    percent: progress.percent,
                    eta_ms: progress.eta_ms,
                });
            }
            events.extend(record.last_preview.clone());
            events
        }
        JobStatus::Succeeded => {
            let images = record
                .output
                .as_ref()
                .map_or_else(Vec::new, |output| output.base64.clone());
            vec![JobEvent::Complete {
                images,
                seeds: record.seeds.clone(),
                timings: record.timings.clone().unwrap_or_default(),
            }]
        }
        JobStatus::Failed => {
            let error = record
                .error
                .clone()
                .unwrap_or_else(|| crate::JobError::new("failed", "job failed"));
            vec![JobEvent::Error {
                code: error.code,
                message: error.message,
            }]
        }
        JobStatus::Cancelled => vec![JobEvent::Cancelled {}],
    }
}
