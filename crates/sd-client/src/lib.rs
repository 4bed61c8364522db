//! Typed client for sd-worker's native job API, for Rust programs (tokio + reqwest, rustls) and, compiled
//! to `wasm32-unknown-unknown`, for browsers (the `wasm` module's wasm-bindgen exports, packaged for npm by
//! `tools/build-wasm-sdk.sh`).
//!
//! Requests, responses, events and the error body are the server's own types from `sd-api-types`, so the
//! client and the server cannot drift. [`Client`] submits, lists, cancels and fetches; [`EventStream`]
//! follows a job's Server-Sent Events to the end, reconnecting and resuming without repeats.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sd_client::ClientError> {
//! let client = sd_client::Client::new("http://127.0.0.1:8600")?;
//! let mut body = sd_client::txt2img("a lighthouse at dusk");
//! body.steps = Some(20);
//! let job = client.submit(&body).await?;
//! let done = client.events(&job.job_id).until_end(|event| println!("{}", event.name())).await?;
//! let png = client.image(&job.job_id, 0).await?;
//! # let _ = (done, png); Ok(()) }
//! ```

mod client;
mod error;
mod events;
mod request;
pub mod resume;
mod rt;
pub mod sse;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use client::{Client, ClientOptions};
pub use error::ClientError;
pub use events::EventStream;
pub use request::{img2img, inpaint, txt2img};
pub use sd_api_types as types;
pub use sd_api_types::{JobBody, JobEvent};
