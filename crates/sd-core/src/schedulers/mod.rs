//! Noise schedulers, one file each, behind the [`Scheduler`] trait. Each cites the diffusers class it matches
//! and is configured from a model's `scheduler/scheduler_config.json` the way diffusers'
//! `XScheduler.from_config(pipe.scheduler.config)` does: keys the file has win, the rest take that class's
//! defaults.

use candle_core::Tensor;

use crate::rng::BatchRng;
use crate::Result;

/// The samplers users pick by name. `parse` accepts our CLI/API names and A1111's display names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplerKind {
    Ddim,
    Pndm,
    Euler,
    EulerAncestral,
    Heun,
    DpmPp2M,
    DpmPp2MKarras,
    UniPc,
    Lcm,
}

/// The denoising loop's view of a scheduler, mirroring diffusers' pipeline loop:
/// `for t in timesteps { x_in = scale_model_input(x); eps = unet(x_in, t); x = step(eps, x) }`.
pub trait Scheduler: Send {
    /// The model timesteps the loop visits, in order (Heun and PNDM visit some twice).
    fn timesteps(&self) -> &[f64];
    /// `init_noise_sigma`: the factor initial latents are multiplied by.
    fn init_noise_sigma(&self) -> f64;
    /// Scales the UNet input at the current step (Euler-family: x / sqrt(sigma^2 + 1); DDIM: identity).
    fn scale_model_input(&self, sample: &Tensor) -> Result<Tensor>;
    /// Advances one entry of `timesteps()`; ancestral and stochastic schedulers draw noise from `rng`.
    fn step(
        &mut self,
        model_output: &Tensor,
        sample: &Tensor,
        rng: &mut BatchRng,
    ) -> Result<Tensor>;
    /// `add_noise(original, noise, timesteps()[index])`, as img2img uses it.
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor>;
    /// Start the loop at `timesteps()[index]` (diffusers' `set_begin_index`, used by img2img).
    fn set_begin_index(&mut self, index: usize);
    /// Where the loop starts (0 unless `set_begin_index` moved it).
    fn begin_index(&self) -> usize;
    /// diffusers' `order`: entries of `timesteps()` per user-visible step (2 for Heun).
    fn order(&self) -> usize {
        1
    }
}

// ---- temporary stand-ins until the schedulers branch lands (replaced by the real module) ----
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct SchedulerConfig {
    #[serde(default)]
    pub prediction_type: Option<String>,
}

impl SchedulerConfig {
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        crate::models::config::read_json(path)
    }
    pub fn is_trailing_spacing(&self) -> bool {
        false
    }
    pub fn prediction_type_name(&self) -> &str {
        self.prediction_type.as_deref().unwrap_or("epsilon")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown sampler `{0}`")]
pub struct UnknownSampler(String);

impl SamplerKind {
    pub fn parse(name: &str) -> std::result::Result<Self, UnknownSampler> {
        Err(UnknownSampler(name.into()))
    }
    pub fn name(&self) -> &'static str {
        "euler"
    }
    pub fn from_config(_c: &SchedulerConfig) -> Option<Self> {
        None
    }
}

pub fn build_scheduler(
    _kind: SamplerKind,
    _config: &SchedulerConfig,
    _steps: usize,
) -> Result<Box<dyn Scheduler>> {
    Err(crate::CoreError::Unsupported(
        "schedulers not merged yet".into(),
    ))
}
