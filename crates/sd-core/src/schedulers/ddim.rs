//! DDIM (Song et al., 2020), matching diffusers 0.42 `DDIMScheduler` with `eta = 0` (deterministic), as
//! the Stable Diffusion pipelines call it. Supports epsilon / v_prediction / sample, all timestep spacings,
//! `steps_offset`, `set_alpha_to_one`, `clip_sample` and `rescale_betas_zero_snr`.

use candle_core::Tensor;

use super::config::{Flag, PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{sqrt_f32, Alphas};
use super::{ops, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::{CoreError, Result};

const CLASS: SchedulerClass = SchedulerClass::Ddim;

pub struct Ddim {
    alphas: Alphas,
    train_timesteps: Vec<i64>,
    /// diffusers steps back by `num_train_timesteps // n` whatever the spacing.
    step_ratio: i64,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        config.reject_flags(CLASS, &[Flag::Thresholding])?;
        let p = config.common(CLASS)?;
        if num_inference_steps > p.num_train_timesteps {
            return Err(CoreError::InvalidInput(format!(
                "{num_inference_steps} steps is more than the scheduler's {} training timesteps",
                p.num_train_timesteps
            )));
        }
        let clip_range = config
            .clip_sample
            .unwrap_or(true)
            .then(|| config.clip_sample_range.unwrap_or(1.0) as f32);
        let train_timesteps = timesteps::ddim(&p, num_inference_steps);
        let steps = Steps::alpha(train_timesteps.clone(), p.alphas_cumprod.clone());
        Ok(Scheduled::new(
            steps,
            Self {
                train_timesteps,
                step_ratio: (p.num_train_timesteps / num_inference_steps) as i64,
                prediction_type: p.prediction_type,
                clip_range,
                alphas: Alphas::new(p.alphas_cumprod, config.set_alpha_to_one.unwrap_or(true)),
            },
        ))
    }
}

impl Solver for Ddim {
    fn step(&mut self, _steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample) = (at.index, at.model_output, at.sample);
        let t = self.train_timesteps[index];
        let prev_t = t - self.step_ratio;
        let alpha_t = self.alphas.at(t)?;
        let alpha_prev = self.alphas.prev(prev_t)?;
        let beta_t = 1.0 - alpha_t;
        let (sqrt_a, sqrt_b) = (sqrt_f32(alpha_t), sqrt_f32(beta_t));

        let x = ops::f32(sample)?;
        let out = ops::f32(model_output)?;
        let (mut pred_x0, pred_eps) = match self.prediction_type {
            PredictionType::Epsilon => (ops::div(&(&x - ops::mul(&out, sqrt_b)?)?, sqrt_a)?, out),
            PredictionType::Sample => {
                let eps = ops::div(&(&x - ops::mul(&out, sqrt_a)?)?, sqrt_b)?;
                (out, eps)
            }
            PredictionType::VPrediction => (
                ops::lin2(sqrt_a, &x, -sqrt_b, &out)?,
                ops::lin2(sqrt_a, &out, sqrt_b, &x)?,
            ),
        };
        if let Some(r) = self.clip_range {
            pred_x0 = pred_x0.clamp(-r, r)?;
        }
        let direction = ops::mul(&pred_eps, sqrt_f32(1.0 - alpha_prev))?;
        let prev = (ops::mul(&pred_x0, sqrt_f32(alpha_prev))? + direction)?;
        ops::like(prev, sample)
    }
}
