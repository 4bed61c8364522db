//! DDIM (Song et al., 2020), matching diffusers 0.42 `DDIMScheduler` with `eta = 0` (deterministic), as
//! the Stable Diffusion pipelines call it. Supports epsilon / v_prediction / sample, all timestep spacings,
//! `steps_offset`, `set_alpha_to_one`, `clip_sample` and `rescale_betas_zero_snr`.

use candle_core::Tensor;

use super::config::{PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{alpha_cumprod_at, sqrt_f32};
use super::{ops, timesteps, Scheduler, StepCursor};
use crate::rng::BatchRng;
use crate::{CoreError, Result};

const CLASS: SchedulerClass = SchedulerClass::Ddim;

pub struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    train_timesteps: Vec<i64>,
    timesteps: Vec<f64>,
    /// diffusers steps back by `num_train_timesteps // n` whatever the spacing.
    step_ratio: i64,
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    cursor: StepCursor,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        config.reject_flag(CLASS, "thresholding", config.thresholding)?;
        let p = config.common(CLASS)?;
        if num_inference_steps > p.num_train_timesteps {
            return Err(CoreError::InvalidInput(format!(
                "{num_inference_steps} steps is more than the scheduler's {} training timesteps",
                p.num_train_timesteps
            )));
        }
        let final_alpha_cumprod = if config.set_alpha_to_one.unwrap_or(true) {
            1.0
        } else {
            p.alphas_cumprod[0]
        };
        let clip_range = config
            .clip_sample
            .unwrap_or(true)
            .then(|| config.clip_sample_range.unwrap_or(1.0) as f32);
        let train_timesteps = timesteps::ddim(&p, num_inference_steps);
        Ok(Self {
            final_alpha_cumprod,
            timesteps: train_timesteps.iter().map(|&t| t as f64).collect(),
            train_timesteps,
            step_ratio: (p.num_train_timesteps / num_inference_steps) as i64,
            prediction_type: p.prediction_type,
            clip_range,
            alphas_cumprod: p.alphas_cumprod,
            cursor: StepCursor::default(),
        })
    }

    fn alpha_at(&self, t: i64) -> Result<f32> {
        alpha_cumprod_at(&self.alphas_cumprod, t)
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: &Tensor) -> Result<Tensor> {
        Ok(sample.clone())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        sample: &Tensor,
        _rng: &mut BatchRng,
    ) -> Result<Tensor> {
        let index = self.cursor.index(self.timesteps.len())?;
        let t = self.train_timesteps[index];
        let prev_t = t - self.step_ratio;
        let alpha_t = self.alpha_at(t)?;
        let alpha_prev = if prev_t >= 0 {
            self.alpha_at(prev_t)?
        } else {
            self.final_alpha_cumprod
        };
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
        self.cursor.advance();
        ops::like(prev, sample)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        let t = *self
            .train_timesteps
            .get(index)
            .ok_or_else(|| self.cursor.out_of_range(index))?;
        ops::add_noise_at_alpha(original, noise, self.alpha_at(t)?)
    }

    fn set_begin_index(&mut self, index: usize) {
        self.cursor.begin_at(index);
    }

    fn begin_index(&self) -> usize {
        self.cursor.begin()
    }
}
