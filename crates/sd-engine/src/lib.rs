//! Jobs without HTTP: the bounded queue, the model thread, job events and the result store.
//!
//! Async code holds an [`Engine`] and calls [`Engine::submit`], [`Engine::subscribe`], [`Engine::cancel`];
//! one OS thread ([`worker`]) owns the [`Backend`] and runs one job at a time. State lives under one lock
//! that is only ever held briefly; the model thread never holds it while the backend computes.

pub mod backend;
mod engine;
mod engine_models;
pub mod events;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod job;
pub mod library;
pub mod metadata;
mod metrics;
mod model_thread;
pub mod models;
mod queue;
mod replies;
mod service;
mod store;

pub use backend::{pipeline_loader, pipeline_loader_hashed, Backend, Loader, StepProgress};
pub use engine::{
    CancelError, CancelOutcome, Engine, EngineConfig, ImageError, Occupancy, Readiness,
    SubmitError, Submitted,
};
pub use engine_models::{ModelEntry, UnknownModel};
pub use events::{JobEvent, Subscription};
pub use job::{
    JobError, JobId, JobRequest, JobSnapshot, JobStatus, JobTimings, Operation, Progress,
};
pub use library::{LibraryModel, LoaderFactory, ModelFormat, ModelLibrary};
pub use models::ModelSet;
pub use service::JobService;
