//! The one clap configuration of the binary: every flag is `--long` and has an env var, shown in `--help`.
//! Boolean env vars accept 1/0, true/false, yes/no, on/off (`HF_HUB_OFFLINE=1`, as containers set it).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
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
    /// Serve the HTTP job API (and the web UI). With --queue and no --model: a fleet gateway.
    Serve(Box<ServeArgs>),
    /// A fleet worker: run the jobs queued in Redis (--queue) for one model.
    Work(Box<WorkArgs>),
    /// Time text encoding, one UNet step, VAE decode and whole generations; print them as JSON.
    Bench(Box<BenchArgs>),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(
        long,
        env = "SD_PROMPT",
        default_value = "a photograph of an astronaut riding a horse"
    )]
    pub prompt: String,
    #[arg(long, env = "SD_NEGATIVE_PROMPT", default_value = "")]
    pub negative_prompt: String,
    /// Default: the model's size (512 for SD 1.x, 1024 for SDXL).
    #[arg(long, env = "SD_WIDTH")]
    pub width: Option<usize>,
    #[arg(long, env = "SD_HEIGHT")]
    pub height: Option<usize>,
    #[arg(long, env = "SD_STEPS", default_value_t = 20)]
    pub steps: usize,
    #[arg(long, env = "SD_GUIDANCE", default_value_t = 7.0)]
    pub guidance: f64,
    #[arg(long, env = "SD_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Timed repeats of each component (median reported); 0 skips the component timings.
    #[arg(long, env = "SD_BENCH_REPEATS", default_value_t = 10)]
    pub repeats: usize,
    /// Untimed warm-up runs before each measurement. Default: 2 (text encoding), 3 (UNet step), 1 (VAE
    /// decode, end to end). CPU runs take seconds per call: 1 is enough there.
    #[arg(long, env = "SD_BENCH_WARMUP")]
    pub warmup: Option<usize>,
    /// Use sd-core's CPU kernels (attention, convolution, GroupNorm, linear) for f32 on the CPU; `false`
    /// measures candle's plain composition instead.
    #[arg(long, env = "SD_BENCH_CPU_KERNELS", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub cpu_kernels: bool,
    /// Timed end-to-end generations (median reported); 0 skips them.
    #[arg(long, env = "SD_BENCH_RUNS", default_value_t = 3)]
    pub runs: usize,
    /// Write the first timed generation's image here (to compare with a reference).
    #[arg(long, env = "SD_OUT")]
    pub out: Option<PathBuf>,
    /// Write the components' outputs (text context, guided noise prediction, decoded pixels; f32) to this
    /// safetensors file.
    #[arg(long, env = "SD_BENCH_DUMP")]
    pub dump: Option<PathBuf>,
}

/// Where and how the model is loaded; shared by every subcommand.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A diffusers folder, a single-file `.safetensors` checkpoint in the original (A1111/ComfyUI/Civitai)
    /// layout, or a Hugging Face hub id such as `stabilityai/sd-turbo` (read from the hub cache; downloaded
    /// when the machine has a network). Pickles (.ckpt/.pt/.bin) are refused.
    #[arg(long, env = "SD_MODEL")]
    pub model: String,
    /// Single files: the family (`sd1`, `sd2`, `sdxl`) instead of the one detected from the tensors.
    #[arg(long, env = "SD_FAMILY")]
    pub family: Option<String>,
    /// `epsilon` or `v_prediction`, replacing the scheduler config's (or, for a single file, the detected)
    /// prediction type; SD 2.x 768-v single files that detection misses need `v_prediction`.
    #[arg(long, env = "SD_PREDICTION_TYPE")]
    pub prediction_type: Option<String>,
    /// Single files: a diffusers folder whose configs, tokenizers and scheduler replace the built-in
    /// defaults (as diffusers' `from_single_file(config=...)`); its weights are not used.
    #[arg(long, env = "SD_MODEL_CONFIG")]
    pub model_config: Option<PathBuf>,
    /// `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
    #[arg(long, env = "SD_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Compute dtype: `f32`, `f16` or `bf16` (half types need a GPU). Default: f32 on CPU, f16 on GPUs.
    #[arg(long, env = "SD_DTYPE")]
    pub dtype: Option<String>,
    /// Weight variant to prefer, e.g. `fp16` for `*.fp16.safetensors` files.
    #[arg(long, env = "SD_VARIANT")]
    pub variant: Option<String>,
    /// A VAE to use instead of the model's (or the one a single file lacks): a folder (config.json +
    /// safetensors) or a single `.safetensors` file in LDM or diffusers layout, e.g. vae-ft-mse or an
    /// fp16-fixed SDXL VAE.
    #[arg(long, env = "SD_VAE")]
    pub vae: Option<PathBuf>,
    /// A folder of LoRA `.safetensors` files (kohya/A1111, LoCon/LyCORIS, diffusers/PEFT), used by
    /// `<lora:NAME:WEIGHT>` in prompts; NAME is the file name without `.safetensors`. Repeatable (env:
    /// comma-separated); the first folder wins a name clash.
    #[arg(long = "lora-dir", env = "SD_LORA_DIRS", value_delimiter = ',')]
    pub lora_dir: Vec<PathBuf>,
    /// Tiled VAE decoding and encoding: `auto` (whole, as diffusers, unless memory requires tiles: on CUDA
    /// after a whole decode runs out of memory, on the CPU/Metal when its estimate exceeds
    /// --vae-memory-budget), `on` (any image larger than one tile, as diffusers' enable_vae_tiling) or `off`
    /// (never). Results and PNG metadata say when a decode was tiled.
    #[arg(long, env = "SD_VAE_TILING", default_value = "auto")]
    pub vae_tiling: String,
    /// With `--vae-tiling auto` on the CPU or Metal: the most memory a whole VAE decode may need before it is
    /// tiled instead, e.g. `8GiB`, `512MiB` (a bare number is MiB). Default: half the memory available at start.
    #[arg(long, env = "SD_VAE_MEMORY_BUDGET", value_parser = parse_bytes)]
    pub vae_memory_budget: Option<u64>,
    /// Fused flash attention on CUDA in f16/bf16 (`false`: matmul + softmax, as candle does).
    #[arg(long, env = "SD_FLASH_ATTENTION", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub flash_attention: bool,
    /// Most scratch memory (MiB) one cuDNN convolution may use (`cudnn` builds). Larger requests fall back
    /// to a slower implicit-GEMM algorithm; unset: cuDNN's fastest choice whatever it needs.
    #[arg(long, env = "SD_CONV_WORKSPACE_LIMIT_MIB")]
    pub conv_workspace_limit_mib: Option<usize>,
    /// Hugging Face hub cache folder for hub ids (default: hf-hub's, `$HF_HOME/hub`).
    #[arg(long, env = "HF_HUB_CACHE")]
    pub hf_cache: Option<PathBuf>,
    /// Resolve hub ids from the cache only; never download.
    #[arg(long, env = "HF_HUB_OFFLINE", value_parser = BoolishValueParser::new())]
    pub offline: bool,
    /// Hugging Face access token for gated or private repos (default: the token file in the HF home).
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub hf_token: Option<String>,
    /// Hugging Face hub endpoint, e.g. a mirror (default: https://huggingface.co).
    #[arg(long, env = "HF_ENDPOINT")]
    pub hf_endpoint: Option<String>,
    /// A folder of textual-inversion embeddings (`.safetensors`, A1111 or SDXL format); repeatable. A prompt
    /// word equal to a file's name (without extension) is replaced by its vectors.
    #[arg(
        long = "embeddings-dir",
        env = "SD_EMBEDDINGS_DIRS",
        value_delimiter = ','
    )]
    pub embeddings_dirs: Vec<PathBuf>,
    /// How prompts are read: `a1111` (weights, BREAK, [from:to:when], [a|b], any length in 75-token chunks)
    /// or `plain` (the literal text, as diffusers: 77 tokens, longer is truncated with a warning). The server
    /// default; native jobs may set `prompt_syntax` per request.
    #[arg(long, env = "SD_PROMPT_SYNTAX", default_value = "a1111", value_parser = parse_prompt_syntax)]
    pub prompt_syntax: sd_core::prompt::PromptSyntax,
}

fn parse_prompt_syntax(text: &str) -> Result<sd_core::prompt::PromptSyntax, String> {
    sd_core::prompt::PromptSyntax::parse(text).map_err(|e| e.to_string())
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
    #[arg(long, env = "SD_PRESERVE_UNMASKED", value_parser = BoolishValueParser::new())]
    pub preserve_unmasked: bool,
    /// SDXL size conditioning: the `original_size` the model is told, as WxH (default: the output size).
    #[arg(long, env = "SD_ORIGINAL_SIZE", value_parser = parse_size)]
    pub original_size: Option<(usize, usize)>,
    /// SDXL: the `target_size` conditioning, WxH (default: the output size).
    #[arg(long, env = "SD_TARGET_SIZE", value_parser = parse_size)]
    pub target_size: Option<(usize, usize)>,
    /// SDXL: `crops_coords_top_left` as X,Y (default 0,0).
    #[arg(long, env = "SD_CROP_TOP_LEFT", value_parser = parse_point)]
    pub crop_top_left: Option<(usize, usize)>,
    /// SDXL: `negative_original_size`, WxH (default: the original size).
    #[arg(long, env = "SD_NEGATIVE_ORIGINAL_SIZE", value_parser = parse_size)]
    pub negative_original_size: Option<(usize, usize)>,
    /// SDXL: `negative_target_size`, WxH (default: the target size).
    #[arg(long, env = "SD_NEGATIVE_TARGET_SIZE", value_parser = parse_size)]
    pub negative_target_size: Option<(usize, usize)>,
    /// Output file: `.png`, `.jpg`/`.jpeg` or `.webp` (lossless), each with the A1111 parameters (PNG text
    /// chunk, EXIF UserComment otherwise); with a batch, image i > 0 is written as NAME-i.EXT.
    #[arg(long, env = "SD_OUT", default_value = "out.png")]
    pub out: PathBuf,
    /// JPEG quality, 1..=100 (for a `.jpg` --out).
    #[arg(long, env = "SD_JPEG_QUALITY", default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
}

/// Redis URL of a fleet's job queue: `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS.
fn redis_url(text: &str) -> Result<String, String> {
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        Ok(text.to_owned())
    } else {
        Err("expected redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]".into())
    }
}

#[derive(Debug, Args)]
#[command(mut_arg("model", |arg| arg.required(false).default_value("").hide_default_value(true)))]
pub struct ServeArgs {
    /// The model to serve (see --model of the other commands); leave out with --queue (a gateway).
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub library: LibraryArgs,
    /// Be a fleet gateway: queue jobs in this Redis (`redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://` for
    /// TLS) for `sd-worker work` processes, instead of loading a model. Needs no --model.
    #[arg(long, env = "SD_QUEUE", hide_env_values = true, value_parser = redis_url)]
    pub queue: Option<String>,
    /// Address to listen on. Without an API key only loopback is allowed (see --insecure-no-auth).
    #[arg(long, env = "SD_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "SD_PORT", default_value_t = 8600)]
    pub port: u16,
    /// Require this key on every route but /health and /ready (`Authorization: Bearer KEY`, or HTTP Basic
    /// with KEY as the password).
    #[arg(
        long,
        env = "SD_API_KEY",
        conflicts_with = "api_key_file",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Read the API key from this file (surrounding whitespace is ignored).
    #[arg(long, env = "SD_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address without an API key.
    #[arg(long, env = "SD_INSECURE_NO_AUTH", value_parser = BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// Jobs that may wait in the queue (the running one not counted); more are refused with 429.
    #[arg(long, env = "SD_MAX_QUEUE", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_queue: u64,
    /// How long finished jobs and their images are kept, e.g. `10m`, `1h`.
    #[arg(long, env = "SD_RESULT_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub result_ttl: Duration,
    /// Keep at most this many finished jobs. Read results beyond it are dropped, oldest first; unread ones are
    /// kept until --result-ttl, and while they fill it new jobs are refused (429 `results_full`).
    #[arg(long, env = "SD_MAX_RESULTS", default_value_t = 256)]
    pub max_results: usize,
    /// Keep at most this many MiB of finished results (PNG files and their base64 copies), with the same
    /// rule as --max-results.
    #[arg(long, env = "SD_MAX_RESULT_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_result_mb: u64,
    /// Browser origin allowed by CORS (repeat, or comma-separate in the env var); `*` allows any.
    #[arg(long = "cors-origin", env = "SD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// This worker's id in heartbeats (default: `sd-worker-PORT`).
    #[arg(long, env = "SD_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Orchestrator ("queen") base URL; when set, heartbeats go to `{URL}/v1/worker-heartbeat`.
    #[arg(long, env = "SD_QUEEN_URL")]
    pub queen_url: Option<String>,
    /// Time between heartbeats, e.g. `30s`.
    #[arg(long, env = "SD_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// On SIGTERM/SIGINT, how long the running job may take to finish before it is cancelled.
    #[arg(long, env = "SD_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Minimum time between two previews of a job in its event stream; `0s` turns previews off.
    #[arg(long, env = "SD_PREVIEW_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub preview_interval: Duration,
    /// Largest request body in MiB (base64 input images count).
    #[arg(long, env = "SD_MAX_BODY_MB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_body_mb: u64,
    /// Without an API key only loopback Host names (localhost, 127.0.0.1, [::1]) are served, against DNS
    /// rebinding; each --allowed-host (repeat, or comma-separate in the env var) adds a name, `*` any.
    #[arg(long = "allowed-host", env = "SD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Open connections at most; further clients wait until one closes.
    #[arg(long, env = "SD_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Time a client has to send a request's headers; also how long an idle keep-alive connection stays open.
    #[arg(long, env = "SD_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a whole request body after its headers (408 after that).
    #[arg(long, env = "SD_BODY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// Build absolute links (signed image URLs) from X-Forwarded-Host/X-Forwarded-Proto. Only behind a proxy
    /// that sets them: any client can send them. Without it links use the Host header.
    #[arg(long, env = "SD_TRUST_FORWARDED", value_parser = BoolishValueParser::new())]
    pub trust_forwarded: bool,
    /// CPU tasks of requests (image decoding and resizing, mask blur, format conversion) run at once; more
    /// wait their turn. 0: one per CPU core.
    #[arg(long, env = "SD_CPU_TASKS", default_value_t = 0)]
    pub cpu_tasks: usize,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The fleet's Redis: `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS.
    #[arg(long, env = "SD_QUEUE", hide_env_values = true, value_parser = redis_url)]
    pub queue: String,
    /// A folder of models: a --model that is not a path is looked up here first (`--models-dir /models
    /// --model sd15` loads /models/sd15; otherwise --model is a path or hub id as usual).
    #[arg(long, env = "SD_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// The model's name in the queue, which requests name in `model` (default: the last component of
    /// --model, e.g. `tiny-sd1`).
    #[arg(long, env = "SD_MODEL_NAME")]
    pub model_name: Option<String>,
    /// This worker's id in Redis (default: HOSTNAME-PID). Must be unique in the fleet.
    #[arg(long, env = "SD_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Time between heartbeats (the worker's liveness key expires after 3 missed ones).
    #[arg(long, env = "SD_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// A job whose worker stopped refreshing it for this long (it died) is run again by another worker.
    #[arg(long, env = "SD_CLAIM_AFTER", default_value = "30s", value_parser = humantime::parse_duration)]
    pub claim_after: Duration,
    /// Times a job is started before it fails as a poison job (its workers keep dying on it).
    #[arg(long, env = "SD_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// How long finished jobs, their events and images are kept in Redis, e.g. `10m`, `1h`.
    #[arg(long, env = "SD_RESULT_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub result_ttl: Duration,
    /// Minimum time between two previews of a job in its event stream; `0s` turns previews off.
    #[arg(long, env = "SD_PREVIEW_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub preview_interval: Duration,
}

/// `WxH` -> (width, height).
fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{text}`: expected WxH, e.g. 1024x1024"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{text}`: `{v}` is not a whole number"))
    };
    Ok((number(w)?, number(h)?))
}

/// `8GiB`, `512M`, `1.5g`, `4096` (MiB) -> bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a size such as 8GiB or 512MiB"))?;
    let scale: f64 = match unit.trim().trim_end_matches("ib").trim_end_matches('b') {
        "" | "m" => (1u64 << 20) as f64,
        "k" => 1024.0,
        "g" => (1u64 << 30) as f64,
        "t" => (1u64 << 40) as f64,
        _ => return Err(format!("`{text}`: unit must be KiB, MiB, GiB or TiB")),
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("`{text}`: must be more than 0"));
    }
    Ok((value * scale) as u64)
}

/// `serve`'s model library: many models by name, loaded as jobs ask for them.
#[derive(Debug, Args, Clone)]
pub struct LibraryArgs {
    /// A folder of models (repeat for several): every diffusers folder and `.safetensors` file in it, or
    /// in one of its subfolders, is a model named by its file/folder name without extension (the first of a
    /// name wins). Jobs pick one with `model` (A1111: `override_settings.sd_model_checkpoint`). Without
    /// --model the first by name loads at start; --model may name one of them. In the env var, separate
    /// folders with `:`.
    #[arg(long = "models-dir", env = "SD_MODELS_DIR", value_delimiter = ':')]
    pub models_dirs: Vec<PathBuf>,
    /// Models kept loaded at once; loading another unloads the least recently used first.
    #[arg(long, env = "SD_MAX_LOADED_MODELS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_loaded_models: u64,
    /// Unload least recently used models while the loaded models' weights (their size on disk) plus the
    /// next one's would exceed this, e.g. `12GiB` (plain numbers are MiB). Default: only the count limits.
    #[arg(long, env = "SD_MODELS_MEMORY_BUDGET", value_parser = parse_bytes)]
    pub models_memory_budget: Option<u64>,
}

/// `X,Y` -> (x, y).
fn parse_point(text: &str) -> Result<(usize, usize), String> {
    let (x, y) = text
        .split_once(',')
        .ok_or_else(|| format!("`{text}`: expected X,Y, e.g. 0,0"))?;
    let number = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{text}`: `{v}` is not a whole number"))
    };
    Ok((number(x)?, number(y)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_points_parse() {
        assert_eq!(parse_size("1024x768"), Ok((1024, 768)));
        assert!(parse_size("1024").is_err());
        assert!(parse_size("ax2").is_err());
        assert_eq!(parse_point("16,8"), Ok((16, 8)));
        assert!(parse_point("16").is_err());
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096 << 20));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn boolean_flags_take_the_usual_spellings() {
        for (text, value) in [
            ("1", true),
            ("0", false),
            ("yes", true),
            ("no", false),
            ("true", true),
            ("False", false),
        ] {
            let cli = Cli::try_parse_from([
                "sd-worker",
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--flash-attention",
                text,
            ])
            .unwrap_or_else(|e| panic!("{text}: {e}"));
            let Command::Generate(args) = cli.command else {
                panic!("not generate")
            };
            assert_eq!(args.model.flash_attention, value, "{text}");
        }
    }
}
