//! Text-to-image (and, through [`InitImage`], image-to-image and inpainting): prompt -> embeddings ->
//! denoising loop -> VAE decode. The public face of the core: the engine and the CLI call only this.

use candle_core::Tensor;
use image::{GrayImage, RgbImage};

use crate::schedulers::SamplerKind;
use crate::{CoreError, Result};

/// Where the model thread runs, as users write it: `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

/// The compute dtype: f32 everywhere; f16/bf16 on GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeSpec {
    F32,
    F16,
    Bf16,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    pub dtype: DTypeSpec,
    /// Weight file variant to prefer, e.g. `fp16` for `*.fp16.safetensors`; falls back to the plain files.
    pub variant: Option<String>,
}

/// What a loaded model is and what it does by default; the engine reports it in `/v1/info`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    pub model: String,
    pub family: String,
    pub prediction_type: String,
    pub device: String,
    pub dtype: String,
    pub default_width: usize,
    pub default_height: usize,
    pub default_steps: usize,
    pub default_guidance: f64,
    pub default_sampler: String,
    /// Width and height must be multiples of this (the VAE's downscale factor).
    pub size_multiple: usize,
    /// The UNet takes masked-image latents (in_channels 9): an inpainting checkpoint.
    pub inpainting: bool,
}

/// Start from a picture: img2img, or inpainting when `mask` is set (white = repaint).
#[derive(Clone, Debug)]
pub struct InitImage {
    pub image: RgbImage,
    pub strength: f64,
    pub mask: Option<GrayImage>,
}

#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    /// Classifier-free guidance; skipped when <= 1.
    pub guidance_scale: f64,
    pub width: usize,
    pub height: usize,
    /// `None`: the scheduler the model's scheduler_config.json names.
    pub sampler: Option<SamplerKind>,
    /// One seed per image; the batch size is `seeds.len()`.
    pub seeds: Vec<u64>,
    /// 1 = last CLIP layer (default), 2 = penultimate, as A1111's "Clip skip".
    pub clip_skip: usize,
    pub init: Option<InitImage>,
}

/// Sent after every denoising step. Returning [`StepControl::Stop`] ends the run with [`CoreError::Cancelled`].
pub struct StepEvent<'a> {
    pub step: usize,
    pub total: usize,
    latents: &'a Tensor,
    latent_to_rgb: &'a crate::pipeline::preview::LatentPreviewer,
}

impl StepEvent<'_> {
    /// A small RGB preview of image 0 from a linear latent-to-RGB projection (no VAE), one pixel per latent.
    pub fn preview(&self) -> Result<RgbImage> {
        self.latent_to_rgb.preview(self.latents)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepControl {
    Continue,
    Stop,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    pub text_encode_ms: f64,
    pub denoise_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
}

#[derive(Clone, Debug)]
pub struct GenerateOutput {
    pub images: Vec<RgbImage>,
    pub seeds: Vec<u64>,
    pub timings: Timings,
}

pub mod preview;

/// A loaded model, owned by one thread.
pub struct Pipeline {}

impl Pipeline {
    /// Loads a diffusers folder, a hub id (`org/name`, from the hub cache or, with a network, the hub).
    pub fn load(model: &str, options: &LoadOptions) -> Result<Self> {
        let _ = (model, options);
        Err(CoreError::Unsupported("pipeline not implemented yet".into()))
    }

    pub fn info(&self) -> &ModelInfo {
        unreachable_info()
    }

    pub fn generate(
        &self,
        request: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<GenerateOutput> {
        let _ = (request, on_step);
        Err(CoreError::Unsupported("pipeline not implemented yet".into()))
    }
}

fn unreachable_info() -> &'static ModelInfo {
    static INFO: std::sync::OnceLock<ModelInfo> = std::sync::OnceLock::new();
    INFO.get_or_init(|| ModelInfo {
        model: String::new(),
        family: String::new(),
        prediction_type: String::new(),
        device: String::new(),
        dtype: String::new(),
        default_width: 512,
        default_height: 512,
        default_steps: 20,
        default_guidance: 7.5,
        default_sampler: String::new(),
        size_multiple: 8,
        inpainting: false,
    })
}
