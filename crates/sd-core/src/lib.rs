//! sd-core: Stable Diffusion inference on candle. Tensors only: no async runtime, no HTTP.
//!
//! Data flows prompt -> [`tokenizer`] -> [`models::clip`] -> denoise loop ([`models::unet`] + [`schedulers`],
//! noise from [`rng`]) -> [`models::vae`] -> RGB images. [`loader`] turns a diffusers folder or hub id into
//! weights and configs; [`pipeline`] strings the pieces together. The models are built from the layers of
//! [`nn`], whose CUDA fast paths live in `cuda` (CUDA builds); [`device`] sets the device up and accounts its
//! memory, [`verify`] checks the fused kernels against candle.

pub mod adapters;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod error;
pub mod interrupt;
pub mod loader;
pub mod models;
pub mod nn;
pub mod pipeline;
pub mod prompt;
pub mod rng;
pub mod schedulers;
pub mod tokenizer;
pub mod verify;

pub use error::{CoreError, Result};
