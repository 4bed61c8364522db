//! The networks, built from their diffusers/transformers `config.json`: CLIP text encoder, UNet, VAE.

pub mod attention;
pub mod clip;
pub mod config;
mod family;
pub mod resnet;
pub mod unet;
pub mod vae;

pub use family::Family;
