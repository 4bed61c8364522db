//! PNDM / PLMS (Liu et al., 2022), matching diffusers 0.42 `PNDMScheduler` (SD 1.x's default scheduler).
//!
//! With `skip_prk_steps` (Stable Diffusion's setting) it runs linear multistep (PLMS) only, visiting the
//! second timestep twice to bootstrap; without it, the first three steps are Runge-Kutta (PRK) steps of four
//! model evaluations each. Supports epsilon and v_prediction, all timestep spacings, `steps_offset` and
//! `set_alpha_to_one`.

use candle_core::Tensor;

use super::config::{PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{sqrt_f32, Alphas};
use super::{ops, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::{CoreError, Result};

const CLASS: SchedulerClass = SchedulerClass::Pndm;
const PNDM_ORDER: usize = 4;

pub struct Pndm {
    alphas: Alphas,
    prediction_type: PredictionType,
    skip_prk_steps: bool,
    /// `num_train_timesteps // num_inference_steps`.
    step_ratio: i64,
    prk_timesteps: Vec<i64>,
    all_timesteps: Vec<i64>,
    /// diffusers' `counter`: steps taken since the start (not since timestep 0, for img2img).
    counter: usize,
    /// Past (PLMS) model outputs, oldest first, at most four.
    ets: Vec<Tensor>,
    cur_model_output: Option<Tensor>,
    cur_sample: Option<Tensor>,
}

impl Pndm {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        let p = config.common(CLASS)?;
        let skip_prk_steps = config.skip_prk_steps.unwrap_or(false);
        let base = timesteps::pndm(&p, num_inference_steps);
        let step_ratio = (p.num_train_timesteps / num_inference_steps) as i64;
        let (prk_timesteps, plms_timesteps) = if skip_prk_steps {
            // Descending, with the second-to-last entry of the ascending list visited twice.
            let n = base.len();
            let mut plms: Vec<i64> = base[..n.saturating_sub(1)].to_vec();
            plms.extend_from_slice(&base[n.saturating_sub(2)..n.saturating_sub(1)]);
            plms.extend_from_slice(&base[n.saturating_sub(1)..]);
            plms.reverse();
            (Vec::new(), plms)
        } else {
            if base.len() < PNDM_ORDER {
                return Err(CoreError::InvalidInput(format!(
                    "PNDM with PRK steps (skip_prk_steps false) needs at least {PNDM_ORDER} steps, got {num_inference_steps}"
                )));
            }
            let half = step_ratio / 2;
            let mut prk: Vec<i64> = base[base.len() - PNDM_ORDER..]
                .iter()
                .flat_map(|&t| [t, t + half])
                .collect();
            prk.pop();
            let mut doubled: Vec<i64> = prk.iter().flat_map(|&t| [t, t]).collect();
            doubled.remove(0);
            doubled.pop();
            doubled.reverse();
            let plms: Vec<i64> = base[..base.len() - 3].iter().rev().copied().collect();
            (doubled, plms)
        };
        let all_timesteps: Vec<i64> = prk_timesteps
            .iter()
            .chain(&plms_timesteps)
            .copied()
            .collect();
        let steps = Steps::alpha(all_timesteps.clone(), p.alphas_cumprod.clone());
        Ok(Scheduled::new(
            steps,
            Self {
                alphas: Alphas::new(p.alphas_cumprod, config.set_alpha_to_one.unwrap_or(false)),
                prediction_type: p.prediction_type,
                skip_prk_steps,
                step_ratio,
                prk_timesteps,
                all_timesteps,
                counter: 0,
                ets: Vec::new(),
                cur_model_output: None,
                cur_sample: None,
            },
        ))
    }

    /// Formula (9) of the PNDM paper: one step from `t` to `prev_t` given an epsilon estimate.
    fn prev_sample(
        &self,
        sample: &Tensor,
        t: i64,
        prev_t: i64,
        model_output: &Tensor,
    ) -> Result<Tensor> {
        let alpha_t = self.alphas.at(t)?;
        let alpha_prev = self.alphas.prev(prev_t)?;
        let beta_t = 1.0 - alpha_t;
        let beta_prev = 1.0 - alpha_prev;
        let eps = match self.prediction_type {
            PredictionType::VPrediction => {
                ops::lin2(sqrt_f32(alpha_t), model_output, sqrt_f32(beta_t), sample)?
            }
            _ => model_output.clone(),
        };
        let sample_coeff = sqrt_f32(alpha_prev / alpha_t);
        let denom = alpha_t * sqrt_f32(beta_prev) + sqrt_f32(alpha_t * beta_t * alpha_prev);
        let correction = ops::div(&ops::mul(&eps, alpha_prev - alpha_t)?, denom)?;
        Ok((ops::mul(sample, sample_coeff)? - correction)?)
    }

    fn step_prk(&mut self, model_output: Tensor, t: i64, sample: Tensor) -> Result<Tensor> {
        let diff_to_prev = if self.counter % 2 == 1 {
            0
        } else {
            self.step_ratio / 2
        };
        let prev_t = t - diff_to_prev;
        let t = self.prk_timesteps[self.counter / 4 * 4];
        let accumulate = |acc: Option<Tensor>, x: Tensor| -> Result<Tensor> {
            Ok(match acc {
                Some(acc) => (acc + x)?,
                None => x,
            })
        };
        let model_output = match self.counter % 4 {
            0 => {
                let sixth = ops::mul(&model_output, 1.0 / 6.0)?;
                self.cur_model_output = Some(accumulate(self.cur_model_output.take(), sixth)?);
                self.ets.push(model_output.clone());
                self.cur_sample = Some(sample.clone());
                model_output
            }
            1 | 2 => {
                let third = ops::mul(&model_output, 1.0 / 3.0)?;
                self.cur_model_output = Some(accumulate(self.cur_model_output.take(), third)?);
                model_output
            }
            _ => {
                let sixth = ops::mul(&model_output, 1.0 / 6.0)?;
                accumulate(self.cur_model_output.take(), sixth)?
            }
        };
        let base = self.cur_sample.clone().unwrap_or(sample);
        self.prev_sample(&base, t, prev_t, &model_output)
    }

    fn step_plms(&mut self, model_output: Tensor, t: i64, sample: Tensor) -> Result<Tensor> {
        let mut t = t;
        let mut prev_t = t - self.step_ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.drain(..self.ets.len() - 3);
            }
            self.ets.push(model_output.clone());
        } else {
            prev_t = t;
            t += self.step_ratio;
        }
        let mut sample = sample;
        let e = &self.ets;
        let n = e.len();
        let model_output = if n == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output
        } else if n == 1 && self.counter == 1 {
            if let Some(saved) = self.cur_sample.take() {
                sample = saved;
            }
            ops::div(&(model_output + &e[0])?, 2.0)?
        } else if n == 2 {
            ops::div(&(ops::mul(&e[1], 3.0)? - &e[0])?, 2.0)?
        } else if n == 3 {
            let sum = ((ops::mul(&e[2], 23.0)? - ops::mul(&e[1], 16.0)?)? + ops::mul(&e[0], 5.0)?)?;
            ops::div(&sum, 12.0)?
        } else {
            let sum = (((ops::mul(&e[n - 1], 55.0)? - ops::mul(&e[n - 2], 59.0)?)?
                + ops::mul(&e[n - 3], 37.0)?)?
                - ops::mul(&e[n - 4], 9.0)?)?;
            ops::mul(&sum, 1.0 / 24.0)?
        };
        self.prev_sample(&sample, t, prev_t, &model_output)
    }
}

impl Solver for Pndm {
    fn step(&mut self, _steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample) = (at.index, at.model_output, at.sample);
        let t = self.all_timesteps[index];
        let out = ops::f32(model_output)?;
        let x = ops::f32(sample)?;
        let prev = if self.counter < self.prk_timesteps.len() && !self.skip_prk_steps {
            self.step_prk(out, t, x)?
        } else {
            self.step_plms(out, t, x)?
        };
        self.counter += 1;
        ops::like(prev, sample)
    }
    // diffusers' PNDM has no `set_begin_index`: img2img just starts the loop later (the provided
    // `set_begin_index`), with a fresh counter.
}
