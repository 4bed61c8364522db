//! Latent Consistency Model multistep sampling (Luo et al., 2023), matching diffusers 0.42 `LCMScheduler`:
//! each step jumps to the consistency function's x0 estimate, then (except on the last step) re-noises it to
//! the next timestep with fresh noise from the job's generators. Timesteps are a subset of the
//! `original_inference_steps` distillation schedule (`timestep_spacing` is not used, as in diffusers).
//! Supports epsilon / v_prediction / sample, `clip_sample`, `set_alpha_to_one` and `timestep_scaling`.

use candle_core::{DType, Tensor};

use super::config::{Flag, PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{np_linspace_open, sqrt_f32, Alphas};
use super::{ops, Scheduled, Solver, StepInput, Steps};
use crate::{CoreError, Result};

const CLASS: SchedulerClass = SchedulerClass::Lcm;
/// diffusers' `sigma_data` for the boundary-condition scalings.
const SIGMA_DATA: f32 = 0.5;

pub struct Lcm {
    alphas: Alphas,
    train_timesteps: Vec<i64>,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    timestep_scaling: f64,
}

impl Lcm {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        config.reject_flags(CLASS, &[Flag::Thresholding])?;
        let p = config.common(CLASS)?;
        let original_steps = config.original_inference_steps.unwrap_or(50);
        if original_steps == 0 || original_steps > p.num_train_timesteps {
            return Err(config.invalid(
                CLASS,
                format!(
                    "original_inference_steps {original_steps} must be in 1..={}",
                    p.num_train_timesteps
                ),
            ));
        }
        if num_inference_steps > original_steps {
            return Err(CoreError::InvalidInput(format!(
                "LCM supports at most {original_steps} steps (the model's original_inference_steps), got {num_inference_steps}"
            )));
        }
        // The distillation schedule, noisiest first, and n evenly spaced picks from it.
        let k = (p.num_train_timesteps / original_steps) as i64;
        let origin: Vec<i64> = (1..=original_steps as i64)
            .rev()
            .map(|i| i * k - 1)
            .collect();
        let train_timesteps: Vec<i64> =
            np_linspace_open(0.0, origin.len() as f64, num_inference_steps)
                .into_iter()
                .map(|i| origin[(i.floor() as usize).min(origin.len() - 1)])
                .collect();
        let steps = Steps::alpha(train_timesteps.clone(), p.alphas_cumprod.clone());
        Ok(Scheduled::new(
            steps,
            Self {
                alphas: Alphas::new(p.alphas_cumprod, config.set_alpha_to_one.unwrap_or(true)),
                train_timesteps,
                prediction_type: p.prediction_type,
                clip_range: config
                    .clip_sample
                    .unwrap_or(false)
                    .then(|| config.clip_sample_range.unwrap_or(1.0) as f32),
                timestep_scaling: config.timestep_scaling.unwrap_or(10.0),
            },
        ))
    }

    /// `(c_skip, c_out)` of the consistency model's boundary condition at timestep `t`.
    fn boundary_scalings(&self, t: i64) -> (f32, f32) {
        let scaled = (t as f64 * self.timestep_scaling) as f32;
        let denom = scaled * scaled + SIGMA_DATA * SIGMA_DATA;
        (SIGMA_DATA * SIGMA_DATA / denom, scaled / sqrt_f32(denom))
    }
}

impl Solver for Lcm {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample, rng) = (at.index, at.model_output, at.sample, at.rng);
        let len = steps.timesteps.len();
        let t = self.train_timesteps[index];
        let prev_t = self.train_timesteps.get(index + 1).copied().unwrap_or(t);
        let alpha_t = self.alphas.at(t)?;
        let alpha_prev = self.alphas.prev(prev_t)?;
        let beta_t = 1.0 - alpha_t;
        let beta_prev = 1.0 - alpha_prev;
        let (c_skip, c_out) = self.boundary_scalings(t);

        let x = ops::f32(sample)?;
        let out = ops::f32(model_output)?;
        let mut pred_x0 = match self.prediction_type {
            PredictionType::Epsilon => ops::div(
                &(&x - ops::mul(&out, sqrt_f32(beta_t))?)?,
                sqrt_f32(alpha_t),
            )?,
            PredictionType::Sample => out,
            PredictionType::VPrediction => {
                ops::lin2(sqrt_f32(alpha_t), &x, -sqrt_f32(beta_t), &out)?
            }
        };
        if let Some(r) = self.clip_range {
            pred_x0 = pred_x0.clamp(-r, r)?;
        }
        let denoised = ops::lin2(c_out, &pred_x0, c_skip, &x)?;
        let prev = if index + 1 != len {
            let noise = rng.randn(x.dims(), x.device(), DType::F32)?;
            ops::lin2(sqrt_f32(alpha_prev), &denoised, sqrt_f32(beta_prev), &noise)?
        } else {
            denoised
        };
        ops::like(prev, sample)
    }
}
