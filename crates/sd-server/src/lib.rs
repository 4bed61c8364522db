//! The HTTP layer: routes, auth, validation into typed requests, error mapping, OpenAPI and SSE.
//!
//! Requests flow `routes` -> `validate` (into `ValidJob`) -> `sd_engine::Engine`; every failure is an
//! [`error::ApiError`] with one mapping to status + JSON. The layer never touches tensors.

pub mod auth;
pub mod compat;
pub mod cpu;
pub mod error;
pub mod extract;
pub mod guard;
pub mod heartbeat;
pub mod images;
pub mod listener;
pub mod openapi;
pub mod routes;
pub mod sse;
pub mod state;
pub mod sync_run;
pub mod ui;
pub mod validate;

pub use error::ApiError;
pub use routes::{app, AppError};
pub use state::{AppState, ServerConfig};
