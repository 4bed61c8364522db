//! Euler (Karras et al., 2022, Algorithm 2 without churn), matching diffusers 0.42 `EulerDiscreteScheduler`
//! with its default `s_churn = 0`. Supports epsilon / v_prediction / sample, all timestep spacings, Karras
//! sigmas, `final_sigmas_type`, `interpolation_type` (linear, log_linear), continuous timesteps for
//! v-prediction, `sigma_min`/`sigma_max` and `rescale_betas_zero_snr`.

use candle_core::Tensor;

use super::config::{Flag, PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{interp_train, log_f32, sigma_to_t, torch_linspace_f32, train_sigmas};
use super::{ops, sigmas, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::Result;

const CLASS: SchedulerClass = SchedulerClass::EulerDiscrete;

pub struct EulerDiscrete {
    prediction_type: PredictionType,
}

impl EulerDiscrete {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        config.reject_flags(CLASS, &[Flag::ExponentialSigmas, Flag::BetaSigmas])?;
        let p = config.common(CLASS)?;
        let n = num_inference_steps;
        let continuous = match config.timestep_type.as_deref().unwrap_or("discrete") {
            "discrete" => false,
            "continuous" => true,
            other => {
                return Err(config.invalid(CLASS, format!("unsupported timestep_type `{other}`")))
            }
        };
        let train = train_sigmas(&p.alphas_cumprod);
        let log_sigmas = log_f32(&train);
        let spaced = timesteps::sigma_family(&p, n);
        let mut sigmas: Vec<f64> = match config.interpolation_type.as_deref().unwrap_or("linear") {
            "linear" => spaced
                .iter()
                .map(|&t| interp_train(t as f64, &train))
                .collect(),
            // diffusers' log_linear yields n + 1 sigmas (before the final one); kept as it is.
            "log_linear" => {
                let (log_max, log_min) = (log_sigmas[log_sigmas.len() - 1], log_sigmas[0]);
                torch_linspace_f32(log_max as f64, log_min as f64, n + 1)
                    .into_iter()
                    .map(|l| (l as f64).exp() as f32 as f64)
                    .collect()
            }
            other => {
                return Err(
                    config.invalid(CLASS, format!("unsupported interpolation_type `{other}`"))
                )
            }
        };
        let mut model_timesteps: Vec<f64> = spaced.iter().map(|&t| t as f64).collect();
        if config.use_karras_sigmas.unwrap_or(false) {
            sigmas = sigmas::karras(config, &sigmas, n);
            model_timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &log_sigmas) as f32 as f64)
                .collect();
        }
        let last = if config.final_sigma_is_min(CLASS)? {
            train[0]
        } else {
            0.0
        };
        let sigmas: Vec<f32> = sigmas
            .iter()
            .map(|&s| s as f32)
            .chain(std::iter::once(last))
            .collect();
        if continuous && p.prediction_type == PredictionType::VPrediction {
            model_timesteps = sigmas[..sigmas.len() - 1]
                .iter()
                .map(|&s| (0.25 * (s as f64).ln() as f32) as f64)
                .collect();
        }
        let steps = Steps::k_diffusion(model_timesteps, sigmas, p.timestep_spacing);
        Ok(Scheduled::new(
            steps,
            Self {
                prediction_type: p.prediction_type,
            },
        ))
    }
}

impl Solver for EulerDiscrete {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample) = (at.index, at.model_output, at.sample);
        let sigma = steps.sigmas[index];
        let x = ops::f32(sample)?;
        let out = ops::f32(model_output)?;
        let pred_x0 = match self.prediction_type {
            PredictionType::Sample => out,
            PredictionType::Epsilon => (&x - ops::mul(&out, sigma)?)?,
            PredictionType::VPrediction => sigmas::v_prediction_x0(&x, &out, sigma)?,
        };
        let derivative = ops::div(&(&x - pred_x0)?, sigma)?;
        let dt = steps.sigmas[index + 1] - sigma;
        let prev = (x + ops::mul(&derivative, dt)?)?;
        ops::like(prev, sample)
    }
}
