//! Text-to-image (and, through [`InitImage`], image-to-image and inpainting): prompt -> embeddings ->
//! denoising loop -> VAE decode. The public face of the core: the engine and the CLI call only this.

pub mod bench;
mod conditioning;
mod denoise;
mod encode;
pub mod img2img;
mod load;
mod loras;
pub mod preview;
mod sources;
pub mod vae_memory;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use image::{GrayImage, RgbImage};

pub use self::conditioning::SizeConditioning;
pub use self::encode::ScheduledContext;
use self::preview::LatentPreviewer;
use crate::adapters::{LoraLibrary, LoraTargets};
use crate::loader::weights::WeightFiles;
use crate::models::clip::ClipTextModel;
use crate::models::unet::UNet;
use crate::models::vae::AutoencoderKl;
use crate::schedulers::{SamplerKind, SchedulerConfig};
use crate::tokenizer::ClipTokenizer;
use crate::{CoreError, Result};

/// A loaded model, owned by one thread.
pub struct Pipeline {
    /// The model folder, or the single checkpoint file.
    root: PathBuf,
    device: Device,
    dtype: DType,
    /// The VAE runs in f32 when its config says it overflows in half precision (`force_upcast`).
    vae_dtype: DType,
    tokenizer: ClipTokenizer,
    text_encoder: ClipTextModel,
    /// SDXL's OpenCLIP bigG tokenizer and encoder (with projection): pooled embeddings come from it.
    second_text: Option<(ClipTokenizer, ClipTextModel)>,
    /// SDXL: an empty negative prompt conditions on zeros rather than on the encoding of "".
    force_zeros_for_empty_prompt: bool,
    unet: UNet,
    vae: AutoencoderKl,
    scheduler_config: SchedulerConfig,
    default_sampler: SamplerKind,
    previewer: LatentPreviewer,
    vae_tiling: VaeTiling,
    vae_memory_budget: Option<u64>,
    info: ModelInfo,
    /// Textual-inversion embeddings usable with this model's text encoders.
    embeddings: crate::prompt::EmbeddingStore,
    /// Weight files per component, kept to report unused tensors.
    weights: Vec<(String, Arc<WeightFiles>)>,
    /// The weights LoRAs may change, and the LoRAs merged into them now.
    lora_targets: LoraTargets,
    /// Where `<lora:NAME:...>` tags find their files (empty until [`Pipeline::set_lora_library`]).
    lora_library: LoraLibrary,
}

/// Where the model thread runs, as users write it: `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

/// The compute dtype: f32 everywhere; f16/bf16 on GPUs. Serialises as [`DTypeSpec::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// Hub cache location and offline mode, for hub ids.
    pub hub: crate::loader::hub::HubOptions,
    /// A VAE folder (config.json + weights) to use instead of the model's own, e.g. an fp16-fixed SDXL VAE.
    pub vae: Option<std::path::PathBuf>,
    /// When to run the VAE tile by tile.
    pub vae_tiling: VaeTiling,
    /// With [`VaeTiling::Auto`] on the CPU and Metal: the most bytes a whole VAE pass may need before it is
    /// tiled instead (`None`: no limit). CUDA ignores it: it tries whole and tiles after out-of-memory.
    pub vae_memory_budget: Option<u64>,
    /// Use the fused flash-attention kernel where it applies (CUDA, half precision); this model's layers.
    pub flash_attention: bool,
    /// The most scratch memory (MiB) one cuDNN convolution of this model may use. `None`: cuDNN's choice.
    pub conv_workspace_limit_mib: Option<usize>,
    /// Folders of textual-inversion embeddings (`.safetensors`), read at load.
    pub embedding_dirs: Vec<std::path::PathBuf>,
    /// Single files: the family, instead of detecting it from the tensors.
    pub family: Option<crate::loader::single_file::Family>,
    /// `epsilon` or `v_prediction`, replacing the scheduler config's (or a single file's detected) one.
    pub prediction_type: Option<String>,
    /// Single files: a diffusers folder whose configs, tokenizers and scheduler replace the built-in ones
    /// (diffusers' `from_single_file(config=...)`).
    pub model_config: Option<std::path::PathBuf>,
}

/// Tiled VAE decoding and encoding (diffusers' `enable_vae_tiling`): bounded memory for large images at the
/// cost of faint seams where tiles are blended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VaeTiling {
    /// Decode whole, exactly as diffusers does by default, unless memory requires tiles: on CUDA after the
    /// whole pass runs out of memory, elsewhere when its estimated peak exceeds the memory budget
    /// (see [`vae_memory`]).
    #[default]
    Auto,
    /// Tile whenever the image is larger than one tile, as diffusers after `enable_vae_tiling()`.
    On,
    /// Never tile (diffusers' default; memory grows with the image).
    Off,
}

impl VaeTiling {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" | "true" | "yes" => Ok(Self::On),
            "off" | "false" | "no" => Ok(Self::Off),
            _ => Err(CoreError::InvalidInput(format!(
                "vae tiling `{text}`: use auto, on or off"
            ))),
        }
    }
}

impl LoadOptions {
    /// The options the model's layers are built with.
    pub fn kernels(&self) -> crate::nn::KernelOptions {
        crate::nn::KernelOptions {
            flash_attention: self.flash_attention,
            conv_workspace_limit: self
                .conv_workspace_limit_mib
                .map_or(usize::MAX, |mib| mib.saturating_mul(1 << 20)),
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            dtype: DTypeSpec::F32,
            variant: None,
            hub: Default::default(),
            vae: None,
            vae_tiling: VaeTiling::Auto,
            vae_memory_budget: None,
            flash_attention: true,
            conv_workspace_limit_mib: None,
            embedding_dirs: Vec::new(),
            family: None,
            prediction_type: None,
            model_config: None,
        }
    }
}

/// What a loaded model is and what it does by default; the engine reports it in `/v1/info`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub model: String,
    pub family: crate::models::Family,
    pub prediction_type: crate::schedulers::PredictionType,
    pub device: String,
    pub dtype: DTypeSpec,
    pub default_width: usize,
    pub default_height: usize,
    pub default_steps: usize,
    pub default_guidance: f64,
    pub default_sampler: SamplerKind,
    /// Width and height must be multiples of this (the VAE's downscale factor).
    pub size_multiple: usize,
    /// The UNet takes masked-image latents (in_channels 9): an inpainting checkpoint.
    pub inpainting: bool,
    /// Textual-inversion embeddings from the embedding folders (served by the embeddings routes).
    #[serde(skip)]
    pub embeddings: crate::prompt::EmbeddingListing,
}

/// Start from a picture: img2img, or inpainting when `mask` is set (white = repaint). The image and the mask
/// are already at the request's size (the caller resizes; a mismatch is `InvalidInput`).
#[derive(Clone, Debug)]
pub struct InitImage {
    pub image: RgbImage,
    /// 0 keeps the input, 1 ignores it (img2img); for inpainting, how much the masked region may change.
    pub strength: f64,
    pub mask: Option<GrayImage>,
    /// Paste the unmasked input pixels back over the result (A1111's inpaint overlay).
    pub preserve_unmasked: bool,
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
    /// SDXL size/crop conditioning; ignored by other families.
    pub size_conditioning: SizeConditioning,
    /// How the prompts are read: A1111's syntax (default) or diffusers' plain 77 tokens.
    pub prompt_syntax: crate::prompt::PromptSyntax,
}

/// Sent after every denoising step. Returning [`StepControl::Stop`] ends the run with [`CoreError::Cancelled`].
pub struct StepEvent<'a> {
    pub step: usize,
    pub total: usize,
    latents: &'a Tensor,
    latent_to_rgb: &'a LatentPreviewer,
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
    /// Whether the VAE decoded these images in tiles (blended seams; not what diffusers' default gives).
    pub vae_tiled: bool,
    /// Things the caller should know that did not stop the job (e.g. a plain prompt that was truncated).
    pub warnings: Vec<String>,
    /// The LoRAs the run applied (from the prompt's tags) and any warnings about them.
    pub loras: crate::adapters::AppliedLoras,
}

impl DeviceSpec {
    /// Parses `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    pub fn parse(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let (kind, ordinal) = match lower.split_once(':') {
            Some((k, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    CoreError::InvalidInput(format!(
                        "device `{text}`: `{n}` is not a device number"
                    ))
                })?;
                (k.to_string(), n)
            }
            None => (lower.clone(), 0),
        };
        match kind.as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(ordinal)),
            "metal" | "mps" => Ok(Self::Metal(ordinal)),
            _ => Err(CoreError::InvalidInput(format!(
                "device `{text}`: use cpu, cuda, cuda:N, metal or metal:N"
            ))),
        }
    }

    pub fn open(&self) -> Result<Device> {
        let unavailable =
            |what: &str, e: candle_core::Error| CoreError::NotAvailable(format!("{what}: {e}"));
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                let device = Device::new_cuda(*n)
                    .map_err(|e| unavailable(&format!("cuda:{n} (is this a CUDA build?)"), e))?;
                crate::device::configure_device(&device)?;
                Ok(device)
            }
            Self::Metal(n) => Device::new_metal(*n)
                .map_err(|e| unavailable(&format!("metal:{n} (is this a Metal build?)"), e)),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl std::fmt::Display for DTypeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl DTypeSpec {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(CoreError::InvalidInput(format!(
                "dtype `{text}`: use f32, f16 or bf16"
            ))),
        }
    }

    /// f32 on the CPU, f16 on GPUs.
    pub fn default_for(device: &DeviceSpec) -> Self {
        match device {
            DeviceSpec::Cpu => Self::F32,
            _ => Self::F16,
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_as_users_write_them() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("CUDA").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::parse("metal:1").unwrap(), DeviceSpec::Metal(1));
        assert!(DeviceSpec::parse("tpu").is_err());
        assert!(DeviceSpec::parse("cuda:x").is_err());
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn vae_tiling_modes() {
        assert_eq!(VaeTiling::parse("ON").unwrap(), VaeTiling::On);
        assert_eq!(VaeTiling::parse("auto").unwrap(), VaeTiling::Auto);
        assert!(VaeTiling::parse("sometimes").is_err());
    }

    #[test]
    fn dtypes_parse_and_default_per_device() {
        assert_eq!(DTypeSpec::parse("fp16").unwrap(), DTypeSpec::F16);
        assert_eq!(DTypeSpec::parse("bf16").unwrap(), DTypeSpec::Bf16);
        assert!(DTypeSpec::parse("int8").is_err());
        assert_eq!(DTypeSpec::default_for(&DeviceSpec::Cpu), DTypeSpec::F32);
        assert_eq!(DTypeSpec::default_for(&DeviceSpec::Cuda(0)), DTypeSpec::F16);
    }
}
