//! Euler ancestral (k-diffusion's `sample_euler_ancestral`), matching diffusers 0.42
//! `EulerAncestralDiscreteScheduler`: an Euler step down to `sigma_down`, then fresh noise of size `sigma_up`
//! drawn from the job's generators (one per image, as diffusers' `randn_tensor` with a list of generators).
//! Supports epsilon and v_prediction, all timestep spacings and `rescale_betas_zero_snr`.

use candle_core::{DType, Tensor};

use super::config::{PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{interp_train, sqrt_f32, train_sigmas};
use super::{ops, sigmas, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::Result;

const CLASS: SchedulerClass = SchedulerClass::EulerAncestralDiscrete;

pub struct EulerAncestral {
    prediction_type: PredictionType,
}

impl EulerAncestral {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        let p = config.common(CLASS)?;
        let train = train_sigmas(&p.alphas_cumprod);
        let spaced = timesteps::sigma_family(&p, num_inference_steps);
        let sigmas: Vec<f32> = spaced
            .iter()
            .map(|&t| interp_train(t as f64, &train) as f32)
            .chain(std::iter::once(0.0))
            .collect();
        let steps = Steps::k_diffusion(
            spaced.iter().map(|&t| t as f64).collect(),
            sigmas,
            p.timestep_spacing,
        );
        Ok(Scheduled::new(
            steps,
            Self {
                prediction_type: p.prediction_type,
            },
        ))
    }
}

impl Solver for EulerAncestral {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample, rng) = (at.index, at.model_output, at.sample, at.rng);
        let sigma = steps.sigmas[index];
        let sigma_to = steps.sigmas[index + 1];
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
        ops::like(prev, sample)
    }
}
