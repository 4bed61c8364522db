//! The one clap configuration of the binary: every flag is `--long` and has an env var, shown in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sd-worker",
    version,
    about = "Stable Diffusion inference worker on candle"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `sd_core=debug`.
    #[arg(long, env = "SD_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate images from the command line.
    Generate(Box<GenerateArgs>),
    /// Serve the HTTP job API (and the web UI).
    Serve(ServeArgs),
}

/// Where and how the model is loaded; shared by every subcommand.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A diffusers folder, or a Hugging Face hub id such as `stabilityai/sd-turbo`
    /// (read from the hub cache; downloaded when the machine has a network).
    #[arg(long, env = "SD_MODEL")]
    pub model: String,
    /// `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
    #[arg(long, env = "SD_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Compute dtype: `f32`, `f16` or `bf16` (half types need a GPU). Default: f32 on CPU, f16 on GPUs.
    #[arg(long, env = "SD_DTYPE")]
    pub dtype: Option<String>,
    /// Weight variant to prefer, e.g. `fp16` for `*.fp16.safetensors` files.
    #[arg(long, env = "SD_VARIANT")]
    pub variant: Option<String>,
    /// Hugging Face hub cache folder for hub ids (default: hf-hub's, `$HF_HOME/hub`).
    #[arg(long, env = "HF_HUB_CACHE")]
    pub hf_cache: Option<PathBuf>,
    /// Resolve hub ids from the cache only; never download.
    #[arg(long, env = "HF_HUB_OFFLINE")]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, env = "SD_PROMPT")]
    pub prompt: String,
    #[arg(long, env = "SD_NEGATIVE_PROMPT", default_value = "")]
    pub negative_prompt: String,
    /// Denoising steps (default: the model's).
    #[arg(long, env = "SD_STEPS")]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale; <= 1 disables guidance (default: the model's).
    #[arg(long, env = "SD_GUIDANCE")]
    pub guidance: Option<f64>,
    /// Sampler: ddim, pndm, euler, euler_a, heun, dpmpp_2m, dpmpp_2m_karras, unipc, lcm (or A1111 names).
    #[arg(long, env = "SD_SAMPLER")]
    pub sampler: Option<String>,
    /// Seed of the first image; image i uses seed + i. Random when omitted.
    #[arg(long, env = "SD_SEED")]
    pub seed: Option<u64>,
    #[arg(long, env = "SD_WIDTH")]
    pub width: Option<usize>,
    #[arg(long, env = "SD_HEIGHT")]
    pub height: Option<usize>,
    /// Number of images.
    #[arg(long, env = "SD_BATCH", default_value_t = 1)]
    pub batch: usize,
    /// 1 = last CLIP layer, 2 = penultimate (A1111's "Clip skip").
    #[arg(long, env = "SD_CLIP_SKIP", default_value_t = 1)]
    pub clip_skip: usize,
    /// Start from this image (img2img); with --mask, inpaint.
    #[arg(long, env = "SD_INIT_IMAGE")]
    pub init_image: Option<PathBuf>,
    /// How much of the init image to change, 0..=1 (default 0.8 for img2img, 1.0 for inpainting).
    #[arg(long, env = "SD_STRENGTH")]
    pub strength: Option<f64>,
    /// Inpainting mask: white repaints, black keeps (RGBA: transparent repaints).
    #[arg(long, env = "SD_MASK")]
    pub mask: Option<PathBuf>,
    /// Blur the mask edges by this many pixels.
    #[arg(long, env = "SD_MASK_BLUR", default_value_t = 0.0)]
    pub mask_blur: f32,
    /// Keep unmasked pixels exactly as in the init image.
    #[arg(long, env = "SD_PRESERVE_UNMASKED")]
    pub preserve_unmasked: bool,
    /// Output PNG; with a batch, image i > 0 is written as NAME-i.png.
    #[arg(long, env = "SD_OUT", default_value = "out.png")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, env = "SD_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "SD_PORT", default_value_t = 8600)]
    pub port: u16,
}
