//! Noise schedulers, one file each, behind the [`Scheduler`] trait. Each cites the diffusers class it matches
//! and is configured from a model's `scheduler/scheduler_config.json` the way diffusers'
//! `XScheduler.from_config(pipe.scheduler.config)` does: keys the file has win, the rest take that class's
//! defaults. [`build_scheduler`] maps a [`SamplerKind`] to its class.
//!
//! All update rules run in f32 whatever the sample's dtype or device, and return the sample's dtype.

mod class;
mod config;
mod ddim;
mod dpm_solver;
mod euler;
mod euler_ancestral;
mod heun;
mod kind;
mod lcm;
mod ops;
mod pndm;
mod schedule;
mod sigmas;
mod steps;
mod timesteps;
mod unipc;

use candle_core::Tensor;

pub use config::{PredictionType, SchedulerClass, SchedulerConfig};
pub use ddim::Ddim;
pub use dpm_solver::DpmSolverMultistep;
pub use euler::EulerDiscrete;
pub use euler_ancestral::EulerAncestral;
pub use heun::Heun;
pub use kind::{SamplerKind, SamplerNameError};
pub use lcm::Lcm;
pub use pndm::Pndm;
pub use steps::Steps;
pub use unipc::UniPcMultistep;

use crate::rng::BatchRng;
use crate::{CoreError, Result};

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
    fn order(&self) -> usize;
    /// The k-diffusion sigmas (one more than `timesteps()`, ending at the final sigma) for the schedulers that
    /// have them; `None` for DDIM, PNDM and LCM.
    fn sigmas(&self) -> Option<&[f32]>;
}

/// One step's inputs as the loop hands them to a [`Solver`], with the index of the step in the schedule.
pub struct StepInput<'a> {
    pub index: usize,
    pub model_output: &'a Tensor,
    pub sample: &'a Tensor,
    pub rng: &'a mut BatchRng,
}

/// A scheduler's update rule, one per file: it is handed the schedule and the step index, and keeps only
/// what its own rule needs (multistep history, Heun's predictor). [`Scheduled`] does the rest.
pub trait Solver: Send {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor>;
    fn order(&self) -> usize {
        1
    }
}

/// A [`Solver`] with its schedule and the loop's position in it: the one [`Scheduler`] implementation.
pub struct Scheduled<S> {
    steps: Steps,
    solver: S,
}

impl<S: Solver> Scheduled<S> {
    pub(crate) fn new(steps: Steps, solver: S) -> Self {
        Self { steps, solver }
    }
}

impl<S: Solver> Scheduler for Scheduled<S> {
    fn timesteps(&self) -> &[f64] {
        self.steps.timesteps()
    }

    fn init_noise_sigma(&self) -> f64 {
        self.steps.init_noise_sigma()
    }

    fn scale_model_input(&self, sample: &Tensor) -> Result<Tensor> {
        self.steps.scale_model_input(sample)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        sample: &Tensor,
        rng: &mut BatchRng,
    ) -> Result<Tensor> {
        let at = StepInput {
            index: self.steps.index()?,
            model_output,
            sample,
            rng,
        };
        let out = self.solver.step(&self.steps, at)?;
        self.steps.advance();
        Ok(out)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        self.steps.add_noise(original, noise, index)
    }

    fn set_begin_index(&mut self, index: usize) {
        self.steps.begin_at(index);
    }

    fn begin_index(&self) -> usize {
        self.steps.begin()
    }

    fn order(&self) -> usize {
        self.solver.order()
    }

    fn sigmas(&self) -> Option<&[f32]> {
        self.steps.sigmas()
    }
}

/// Builds the scheduler for `kind` from a model's scheduler config, ready for `num_inference_steps` steps.
///
/// The classes are those diffusers uses for the same names (and the golden fixtures were made with):
/// ddim -> DDIMScheduler, pndm -> PNDMScheduler, euler -> EulerDiscreteScheduler, euler_a ->
/// EulerAncestralDiscreteScheduler, heun -> HeunDiscreteScheduler, dpmpp_2m -> DPMSolverMultistepScheduler
/// (use_karras_sigmas forced off), dpmpp_2m_karras -> the same with use_karras_sigmas on, unipc ->
/// UniPCMultistepScheduler, lcm -> LCMScheduler.
pub fn build_scheduler(
    kind: SamplerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
) -> Result<Box<dyn Scheduler>> {
    if num_inference_steps == 0 {
        return Err(CoreError::InvalidInput(
            "the number of steps must be at least 1".into(),
        ));
    }
    let n = num_inference_steps;
    Ok(match kind {
        SamplerKind::Ddim => Box::new(Ddim::new(config, n)?),
        SamplerKind::Pndm => Box::new(Pndm::new(config, n)?),
        SamplerKind::Euler => Box::new(EulerDiscrete::new(config, n)?),
        SamplerKind::EulerAncestral => Box::new(EulerAncestral::new(config, n)?),
        SamplerKind::Heun => Box::new(Heun::new(config, n)?),
        SamplerKind::DpmPp2M => Box::new(DpmSolverMultistep::new(config, n, false)?),
        SamplerKind::DpmPp2MKarras => Box::new(DpmSolverMultistep::new(config, n, true)?),
        SamplerKind::UniPc => Box::new(UniPcMultistep::new(config, n)?),
        SamplerKind::Lcm => Box::new(Lcm::new(config, n)?),
    })
}
