//! What every scheduler keeps the same way, in one place: the timesteps the loop visits, where the loop
//! stands in them (diffusers' `_step_index` and `_begin_index`), the k-diffusion sigmas of the
//! sigma-parameterised schedulers, and what those imply for `init_noise_sigma`, input scaling and noising.

use candle_core::Tensor;

use super::config::TimestepSpacing;
use super::schedule::alpha_cumprod_at;
use super::{ops, sigmas};
use crate::{CoreError, Result};

/// How `add_noise` noises a clean sample at a step of the schedule.
#[derive(Clone, Debug)]
enum Noising {
    /// `original + noise * sigma` (k-diffusion: Euler, Euler ancestral, Heun).
    Sigma,
    /// `alpha_t * original + sigma_t * noise`, both from the k-diffusion sigma (DPM-Solver, UniPC).
    VpFromSigma,
    /// At `alphas_cumprod` of the step's training timestep (DDIM, PNDM, LCM).
    Alpha {
        train_timesteps: Vec<i64>,
        alphas_cumprod: Vec<f32>,
    },
}

/// A scheduler's schedule and position, kept by [`super::Scheduled`] and read by every [`super::Solver`].
#[derive(Clone, Debug)]
pub struct Steps {
    pub(super) timesteps: Vec<f64>,
    /// One more than `timesteps` for sigma-parameterised schedulers (ending at the final sigma); empty for
    /// DDIM, PNDM and LCM.
    pub(super) sigmas: Vec<f32>,
    /// Whether the UNet input is divided by `sqrt(sigma^2 + 1)` (Euler, Euler ancestral, Heun).
    scales_input: bool,
    noising: Noising,
    init_noise_sigma: f32,
    index: usize,
    begin: usize,
}

impl Steps {
    /// The schedule of an alpha-parameterised scheduler visiting `train_timesteps` (`init_noise_sigma` 1,
    /// input as it is, noised at `alphas_cumprod[t]`).
    pub(super) fn alpha(train_timesteps: Vec<i64>, alphas_cumprod: Vec<f32>) -> Self {
        Self {
            timesteps: train_timesteps.iter().map(|&t| t as f64).collect(),
            sigmas: Vec::new(),
            scales_input: false,
            noising: Noising::Alpha {
                train_timesteps,
                alphas_cumprod,
            },
            init_noise_sigma: 1.0,
            index: 0,
            begin: 0,
        }
    }

    /// A multistep solver's schedule (DPM-Solver, UniPC): sigmas for its updates and `add_noise`, but the
    /// input as it is and `init_noise_sigma` 1, as diffusers.
    pub(super) fn multistep(timesteps: Vec<f64>, sigmas: Vec<f32>) -> Self {
        Self {
            timesteps,
            sigmas,
            scales_input: false,
            noising: Noising::VpFromSigma,
            init_noise_sigma: 1.0,
            index: 0,
            begin: 0,
        }
    }

    /// The k-diffusion schedule of Euler, Euler ancestral and Heun: inputs scaled by `1 / sqrt(sigma^2 + 1)`
    /// and `init_noise_sigma` from the largest sigma and the spacing.
    pub(super) fn k_diffusion(
        timesteps: Vec<f64>,
        sigmas: Vec<f32>,
        spacing: TimestepSpacing,
    ) -> Self {
        Self {
            init_noise_sigma: sigmas::init_noise_sigma(&sigmas, spacing),
            scales_input: true,
            noising: Noising::Sigma,
            ..Self::multistep(timesteps, sigmas)
        }
    }

    pub(super) fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    pub(super) fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma as f64
    }

    /// The sigmas, where the scheduler has them.
    pub(super) fn sigmas(&self) -> Option<&[f32]> {
        (!self.sigmas.is_empty()).then_some(self.sigmas.as_slice())
    }

    /// The current index, or an error once the loop has run past the last timestep.
    pub(super) fn index(&self) -> Result<usize> {
        if self.index < self.timesteps.len() {
            Ok(self.index)
        } else {
            Err(CoreError::InvalidInput(format!(
                "scheduler stepped past its last timestep (index {} of {})",
                self.index,
                self.timesteps.len()
            )))
        }
    }

    /// Moves to the next timestep (the end of every `step`).
    pub(super) fn advance(&mut self) {
        self.index += 1;
    }

    pub(super) fn begin_at(&mut self, index: usize) {
        self.index = index;
        self.begin = index;
    }

    pub(super) fn begin(&self) -> usize {
        self.begin
    }

    /// `values[index]` for a per-timestep table, or the error `add_noise` gives past the schedule's end.
    pub(super) fn at<T: Copy>(values: &[T], index: usize) -> Result<T> {
        values.get(index).copied().ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "timestep index {index} is past the end of the schedule"
            ))
        })
    }

    /// The UNet input at the current step: `sample / sqrt(sigma^2 + 1)` for k-diffusion schedules, else
    /// `sample` itself.
    pub(super) fn scale_model_input(&self, sample: &Tensor) -> Result<Tensor> {
        if !self.scales_input {
            return Ok(sample.clone());
        }
        sigmas::scale_model_input(sample, self.sigmas[self.index()?])
    }

    /// `add_noise(original, noise, timesteps()[index])` as the scheduler's class does it.
    pub(super) fn add_noise(
        &self,
        original: &Tensor,
        noise: &Tensor,
        index: usize,
    ) -> Result<Tensor> {
        match &self.noising {
            Noising::Sigma => sigmas::add_noise(original, noise, Self::at(&self.sigmas, index)?),
            Noising::VpFromSigma => {
                let (alpha, sigma) = sigmas::alpha_sigma(Self::at(&self.sigmas, index)?);
                let noisy = ops::lin2(alpha, &ops::f32(original)?, sigma, &ops::f32(noise)?)?;
                ops::like(noisy, original)
            }
            Noising::Alpha {
                train_timesteps,
                alphas_cumprod,
            } => {
                let t = Self::at(train_timesteps, index)?;
                ops::add_noise_at_alpha(original, noise, alpha_cumprod_at(alphas_cumprod, t)?)
            }
        }
    }
}
