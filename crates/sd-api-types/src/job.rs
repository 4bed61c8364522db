//! A job as the API describes it: its status, operation, progress, timings, error, and the events of its
//! life that the SSE stream carries (`event:` name = the JSON `type` tag).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    ImageGeneration,
    ImageTransform,
    ImageInpaint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobError {
    pub code: String,
    pub message: String,
}

impl JobError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Where a finished job's time went, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobTimings {
    /// Submitted -> started.
    pub queue_ms: f64,
    pub text_encode_ms: f64,
    pub denoise_ms: f64,
    pub decode_ms: f64,
    /// The core's whole `generate` call.
    pub generate_ms: f64,
    /// PNG encoding of the results.
    pub encode_ms: f64,
    /// Submitted -> finished.
    pub total_ms: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub percent: f64,
    /// Estimated time to the last step, from the mean step time so far.
    pub eta_ms: u64,
}

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
