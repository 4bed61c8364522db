//! Jobs without HTTP: the bounded queue, the model thread, job events and the result store.
//!
//! Async code holds an [`Engine`] and calls [`Engine::submit`], [`Engine::subscribe`], [`Engine::cancel`];
//! one OS thread ([`worker`]) owns the [`Backend`] and runs one job at a time. State lives under one lock
//! that is only ever held briefly; the model thread never holds it while the backend computes.

pub mod backend;
mod engine;
pub mod events;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod job;
pub mod metadata;
mod metrics;
mod queue;
mod service;
mod store;
mod worker;

pub use backend::{pipeline_loader, Backend, Loader, StepProgress};
pub use engine::{
    CancelError, CancelOutcome, Engine, EngineConfig, ImageError, Load, Readiness, SubmitError,
    Submitted,
};
pub use events::{JobEvent, Subscription};
pub use job::{
    JobError, JobId, JobRequest, JobSnapshot, JobStatus, JobTimings, Operation, Progress,
};
pub use service::JobService;
