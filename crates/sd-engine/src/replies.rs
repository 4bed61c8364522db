//! What the engine's handle answers: where the model is in its life, the outcomes and errors of submitting,
//! cancelling and fetching images, and queue occupancy. Shared by every `JobService`.

use std::sync::Arc;
use std::time::Duration;

use sd_core::pipeline::ModelInfo;

use crate::job::{JobId, JobStatus};

/// Where the model is in its life.
#[derive(Clone, Debug)]
pub enum Readiness {
    Loading,
    Ready(Arc<ModelInfo>),
    /// The model could not load; the reason says why.
    Failed(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the queue is full")]
    QueueFull { retry_after: Duration },
    /// Unread results fill the result budget (count or bytes); they are kept until read or expired.
    #[error("unread results fill the result budget")]
    ResultsFull { retry_after: Duration },
    #[error("the model is not loaded yet")]
    NotReady,
    #[error("the worker is shutting down")]
    ShuttingDown,
    /// The job store (Redis, for a gateway) cannot be reached; the reason says why.
    #[error("the job queue is unavailable: {0}")]
    Unavailable(String),
    /// The job names a model the library does not have.
    #[error("{0}")]
    UnknownModel(crate::engine_models::UnknownModel),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CancelError {
    #[error("no job with this id")]
    NotFound,
    #[error("the job already finished ({})", .0.as_str())]
    AlreadyFinished(JobStatus),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("no job with this id")]
    NotFound,
    #[error("the job has no images ({})", .0.as_str())]
    NotSucceeded(JobStatus),
    #[error("the job has {0} images")]
    OutOfRange(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub id: JobId,
    pub position: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting and is now cancelled.
    Cancelled,
    /// It is running and stops at its next check (between UNet blocks).
    Cancelling,
}

/// Queue occupancy right now: jobs waiting, whether one runs, whether new ones are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occupancy {
    pub queued: usize,
    pub running: bool,
    pub accepting: bool,
}
