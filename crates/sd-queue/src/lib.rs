//! Scale-out on Redis Streams. A gateway serves the HTTP API from [`Gateway`] (a [`sd_engine::JobService`]
//! whose jobs live in Redis); workers ([`worker::run`]) drain one model's stream each and run the jobs on
//! the in-process engine. Redis layout: [`conn::keys`]; state changes: [`scripts`].
//!
//! Guarantees: a job accepted by a gateway stays in its model's stream until a worker acknowledges it with
//! its outcome; a worker that dies leaves its job pending and another takes it over after `claim_after`;
//! a job whose workers keep dying fails after `max_attempts`; each job has one outcome, written once.

pub mod conn;
mod follow;
pub mod gateway;
mod metrics;
pub mod registry;
mod run;
pub mod scripts;
mod snapshot;
pub mod wire;
pub mod worker;

pub use conn::{QueueError, Redis};
pub use gateway::{Gateway, GatewayConfig};
pub use worker::WorkerConfig;
