//! Heun's method (Karras et al., 2022, Algorithm 1 without churn), matching diffusers 0.42
//! `HeunDiscreteScheduler`. Order 2: every sigma but the first is visited twice (an Euler predictor, then the
//! trapezoidal corrector), so `timesteps()` has `2n - 1` entries. Supports epsilon / v_prediction / sample,
//! all timestep spacings, Karras sigmas and `clip_sample`.

use candle_core::Tensor;

use super::config::{Flag, PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{interp_train, log_f32, sigma_to_t, train_sigmas};
use super::{ops, sigmas, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::Result;

const CLASS: SchedulerClass = SchedulerClass::HeunDiscrete;

/// What the first-order half of a Heun step leaves for the second half.
struct Predictor {
    derivative: Tensor,
    dt: f32,
    sample: Tensor,
}

pub struct Heun {
    prediction_type: PredictionType,
    clip_range: Option<f32>,
    predictor: Option<Predictor>,
}

impl Heun {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        config.reject_flags(CLASS, &[Flag::ExponentialSigmas, Flag::BetaSigmas])?;
        let p = config.common(CLASS)?;
        let n = num_inference_steps;
        let train = train_sigmas(&p.alphas_cumprod);
        let spaced = timesteps::sigma_family(&p, n);
        let mut base_sigmas: Vec<f64> = spaced
            .iter()
            .map(|&t| interp_train(t as f64, &train))
            .collect();
        let mut base_timesteps: Vec<f64> = spaced.iter().map(|&t| t as f64).collect();
        if config.use_karras_sigmas.unwrap_or(false) {
            let log_sigmas = log_f32(&train);
            base_sigmas = sigmas::karras(config, &base_sigmas, n);
            base_timesteps = base_sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &log_sigmas))
                .collect();
        }
        let base_sigmas: Vec<f32> = base_sigmas
            .iter()
            .map(|&s| s as f32)
            .chain(std::iter::once(0.0))
            .collect();
        let sigmas = interleave(&base_sigmas, true);
        let timesteps: Vec<f64> = interleave(&base_timesteps, false)
            .iter()
            .map(|&t| t as f32 as f64)
            .collect();
        let clip_range = config
            .clip_sample
            .unwrap_or(false)
            .then(|| config.clip_sample_range.unwrap_or(1.0) as f32);
        let steps = Steps::k_diffusion(timesteps, sigmas, p.timestep_spacing);
        Ok(Scheduled::new(
            steps,
            Self {
                prediction_type: p.prediction_type,
                clip_range,
                predictor: None,
            },
        ))
    }
}

/// `[v0, v1, v1, v2, v2, ...]`: every entry after the first doubled, except the last when `keep_last_single`.
fn interleave<T: Copy>(values: &[T], keep_last_single: bool) -> Vec<T> {
    let Some((&first, rest)) = values.split_first() else {
        return Vec::new();
    };
    let (doubled, tail) = match rest.split_last() {
        Some((&last, middle)) if keep_last_single => (middle, Some(last)),
        _ => (rest, None),
    };
    std::iter::once(first)
        .chain(doubled.iter().flat_map(|&v| [v, v]))
        .chain(tail)
        .collect()
}

impl Solver for Heun {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample) = (at.index, at.model_output, at.sample);
        let first_order = self.predictor.is_none();
        let (sigma, sigma_next) = if first_order {
            (steps.sigmas[index], steps.sigmas[index + 1])
        } else {
            (steps.sigmas[index - 1], steps.sigmas[index])
        };
        let sigma_input = if first_order { sigma } else { sigma_next };
        let x = ops::f32(sample)?;
        let out = ops::f32(model_output)?;
        let mut pred_x0 = match self.prediction_type {
            PredictionType::Epsilon => (&x - ops::mul(&out, sigma_input)?)?,
            PredictionType::VPrediction => sigmas::v_prediction_x0(&x, &out, sigma_input)?,
            PredictionType::Sample => out,
        };
        if let Some(r) = self.clip_range {
            pred_x0 = pred_x0.clamp(-r, r)?;
        }
        let prev = match self.predictor.take() {
            None => {
                let derivative = ops::div(&(&x - pred_x0)?, sigma)?;
                let dt = sigma_next - sigma;
                let prev = (&x + ops::mul(&derivative, dt)?)?;
                self.predictor = Some(Predictor {
                    derivative,
                    dt,
                    sample: x,
                });
                prev
            }
            Some(first) => {
                let derivative = ops::div(&(&x - pred_x0)?, sigma_next)?;
                let derivative = ops::div(&(first.derivative + derivative)?, 2.0)?;
                (first.sample + ops::mul(&derivative, first.dt)?)?
            }
        };
        ops::like(prev, sample)
    }

    fn order(&self) -> usize {
        2
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::interleave;

    #[test]
    fn interleave_doubles_the_middle() {
        assert_eq!(interleave(&[1, 2, 3, 0], true), vec![1, 2, 2, 3, 3, 0]);
        assert_eq!(interleave(&[1, 2, 3], false), vec![1, 2, 2, 3, 3]);
        assert_eq!(interleave(&[1], false), vec![1]);
        assert_eq!(interleave::<i32>(&[], true), Vec::<i32>::new());
    }
}
