//! Euler ancestral (k-diffusion's `sample_euler_ancestral`), matching diffusers 0.42
//! `EulerAncestralDiscreteScheduler`: an Euler step down to `sigma_down`, then fresh noise of size `sigma_up`
//! drawn from the job's generators (one per image, as diffusers' `randn_tensor` with a list of generators).
//! Supports epsilon and v_prediction, all timestep spacings and `rescale_betas_zero_snr`.

use candle_core::{DType, Tensor};

use super::config::{PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{interp_train, sqrt_f32, train_sigmas};
use super::{ops, sigmas, timesteps, Scheduler, StepCursor};
use crate::rng::BatchRng;
use crate::Result;

const CLASS: SchedulerClass = SchedulerClass::EulerAncestralDiscrete;

pub struct EulerAncestral {
    sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    init_noise_sigma: f32,
    prediction_type: PredictionType,
    cursor: StepCursor,
}

impl EulerAncestral {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let p = config.common(CLASS)?;
        let train = train_sigmas(&p.alphas_cumprod);
        let spaced = timesteps::sigma_family(&p, num_inference_steps);
        let sigmas: Vec<f32> = spaced
            .iter()
            .map(|&t| interp_train(t as f64, &train) as f32)
            .chain(std::iter::once(0.0))
            .collect();
        Ok(Self {
            init_noise_sigma: sigmas::init_noise_sigma(&sigmas, p.timestep_spacing),
            sigmas,
            timesteps: spaced.iter().map(|&t| t as f64).collect(),
            prediction_type: p.prediction_type,
            cursor: StepCursor::default(),
        })
    }
}

impl Scheduler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma as f64
    }

    fn scale_model_input(&self, sample: &Tensor) -> Result<Tensor> {
        let index = self.cursor.index(self.timesteps.len())?;
        sigmas::scale_model_input(sample, self.sigmas[index])
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        sample: &Tensor,
        rng: &mut BatchRng,
    ) -> Result<Tensor> {
        let index = self.cursor.index(self.timesteps.len())?;
        let sigma = self.sigmas[index];
        let sigma_to = self.sigmas[index + 1];
        let x = ops::f32(sample)?;
        let out = ops::f32(model_output)?;
        let pred_x0 = match self.prediction_type {
            PredictionType::VPrediction => sigmas::v_prediction_x0(&x, &out, sigma)?,
            _ => (&x - ops::mul(&out, sigma)?)?,
        };
        let (from2, to2) = (sigma * sigma, sigma_to * sigma_to);
        let sigma_up = sqrt_f32(to2 * (from2 - to2) / from2);
        let sigma_down = sqrt_f32(to2 - sigma_up * sigma_up);
        let derivative = ops::div(&(&x - pred_x0)?, sigma)?;
        let prev = (&x + ops::mul(&derivative, sigma_down - sigma)?)?;
        let noise = rng.randn(x.dims(), x.device(), DType::F32)?;
        let prev = (prev + ops::mul(&noise, sigma_up)?)?;
        self.cursor.advance();
        ops::like(prev, sample)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        let sigma = *self
            .sigmas
            .get(index)
            .ok_or_else(|| self.cursor.out_of_range(index))?;
        sigmas::add_noise(original, noise, sigma)
    }

    fn set_begin_index(&mut self, index: usize) {
        self.cursor.begin_at(index);
    }

    fn begin_index(&self) -> usize {
        self.cursor.begin()
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }
}
