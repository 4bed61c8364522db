//! Job events as subscribers see them, and [`Subscription`]: a snapshot of a job's current state followed by
//! its live events, taken under the engine lock so nothing falls in between.

use std::sync::Arc;

use base64::Engine as _;

use tokio::sync::broadcast;

use crate::job::{JobRecord, JobStatus};

// The event type lives in `sd-api-types` (shared with the client SDK); re-exported under its old path.
pub use sd_api_types::JobEvent;

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
