//! sd-core: Stable Diffusion inference on candle. Tensors only: no async runtime, no HTTP.
//!
//! Data flows prompt -> [`tokenizer`] -> [`models::clip`] -> denoise loop ([`models::unet`] + [`schedulers`],
//! noise from [`rng`]) -> [`models::vae`] -> RGB images. [`loader`] turns a diffusers folder or hub id into
//! weights and configs; [`pipeline`] strings the pieces together.

pub mod adapters;
pub mod cpu;
pub mod error;
pub mod fused;
pub mod interrupt;
pub mod loader;
pub mod models;
pub mod pipeline;
pub mod prompt;
pub mod rng;
pub mod schedulers;
pub mod tokenizer;

pub use error::{CoreError, Result};
