//! Pieces shared by the k-diffusion style (sigma-parameterised) schedulers, Euler, Euler ancestral and Heun:
//! input scaling, `init_noise_sigma`, `add_noise`, v-prediction conversion and Karras sigma bounds; and the
//! VP noise levels ([`Point`]) of the multistep solvers.

use candle_core::Tensor;

use super::config::{SchedulerConfig, TimestepSpacing};
use super::ops;
use super::schedule::{karras_sigmas, sqrt_f32};
use crate::Result;

/// `init_noise_sigma`: the largest sigma, or `sqrt(max^2 + 1)` for `leading` spacing.
pub(crate) fn init_noise_sigma(sigmas: &[f32], spacing: TimestepSpacing) -> f32 {
    let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
        TimestepSpacing::Leading => sqrt_f32(max * max + 1.0),
    }
}

/// `sample / sqrt(sigma^2 + 1)`, computed in f32 and returned in the sample's dtype.
pub(crate) fn scale_model_input(sample: &Tensor, sigma: f32) -> Result<Tensor> {
    let scaled = ops::div(&ops::f32(sample)?, sqrt_f32(sigma * sigma + 1.0))?;
    ops::like(scaled, sample)
}

/// `original + noise * sigma`.
pub(crate) fn add_noise(original: &Tensor, noise: &Tensor, sigma: f32) -> Result<Tensor> {
    let noisy = (ops::f32(original)? + ops::mul(&ops::f32(noise)?, sigma)?)?;
    ops::like(noisy, original)
}

/// The denoised estimate from a v-prediction: `v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)`.
pub(crate) fn v_prediction_x0(
    sample: &Tensor,
    model_output: &Tensor,
    sigma: f32,
) -> Result<Tensor> {
    let c = sigma * sigma + 1.0;
    Ok((ops::mul(model_output, -sigma / sqrt_f32(c))? + ops::div(sample, c)?)?)
}

/// `(alpha_t, sigma_t)` of the VP process for a k-diffusion sigma: `alpha = 1 / sqrt(sigma^2 + 1)`.
pub(crate) fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / sqrt_f32(sigma * sigma + 1.0);
    (alpha, sigma * alpha)
}

/// `log(alpha) - log(sigma)`, the half log-SNR the multistep solvers step in (computed in f64).
pub(crate) fn lambda(alpha: f32, sigma: f32) -> f32 {
    ((alpha as f64).ln() as f32) - ((sigma as f64).ln() as f32)
}

/// One noise level of the multistep solvers (DPM-Solver, UniPC): VP `alpha`, `sigma` and half log-SNR
/// `lambda` for a k-diffusion sigma.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    pub alpha: f32,
    pub sigma: f32,
    pub lambda: f32,
}

impl Point {
    pub(crate) fn new(k_sigma: f32) -> Self {
        let (alpha, sigma) = alpha_sigma(k_sigma);
        Self {
            alpha,
            sigma,
            lambda: lambda(alpha, sigma),
        }
    }
}

/// Karras sigmas between `config.sigma_min/max` (when the config sets them) or the ends of `in_sigmas`.
pub(crate) fn karras(config: &SchedulerConfig, in_sigmas: &[f64], n: usize) -> Vec<f64> {
    let first = in_sigmas.first().copied().unwrap_or(0.0);
    let last = in_sigmas.last().copied().unwrap_or(0.0);
    karras_sigmas(
        config.sigma_min.unwrap_or(last),
        config.sigma_max.unwrap_or(first),
        n,
    )
}
