//! UniPC (Zhao et al., 2023), matching diffusers 0.42 `UniPCMultistepScheduler`: a multistep predictor
//! (UniP) whose result is refined by a corrector (UniC) once the next model output is known. Defaults:
//! `bh2`, `solver_order` 2, `predict_x0`. Supports `bh1`, any solver order, `disable_corrector`,
//! `lower_order_final`, epsilon / v_prediction / sample, all timestep spacings, Karras sigmas,
//! `final_sigmas_type` and `rescale_betas_zero_snr`.

use candle_core::Tensor;

use super::config::{Flag, PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{interp_train, log_f32, np_round, sigma_to_t, train_sigmas};
use super::sigmas::{self, Point};
use super::{ops, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::{CoreError, Result};

const CLASS: SchedulerClass = SchedulerClass::UniPcMultistep;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// `B(h) = h`.
    Bh1,
    /// `B(h) = e^h - 1`.
    Bh2,
}

pub struct UniPcMultistep {
    prediction_type: PredictionType,
    predict_x0: bool,
    variant: Variant,
    solver_order: usize,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    /// Converted model outputs of the last `solver_order` steps, oldest first.
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
    /// The order the last predictor used; the corrector reuses it.
    this_order: usize,
    last_sample: Option<Tensor>,
    sigmas: Vec<f32>,
}

fn expm1(x: f32) -> f32 {
    (x as f64).exp_m1() as f32
}

/// The `b` vector of UniPC's linear system for `order` terms, plus `h * phi_1(h)` and `B(h)`.
fn coefficients(hh: f32, variant: Variant, order: usize) -> (Vec<f32>, f32, f32) {
    let h_phi_1 = expm1(hh);
    let b_h = match variant {
        Variant::Bh1 => hh,
        Variant::Bh2 => expm1(hh),
    };
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial = 1u64;
    let mut b = Vec::with_capacity(order);
    for i in 1..=order as u64 {
        b.push(h_phi_k * factorial as f32 / b_h);
        factorial *= i + 1;
        h_phi_k = h_phi_k / hh - (1.0 / factorial as f64) as f32;
    }
    (b, h_phi_1, b_h)
}

/// Solves `R x = b` where `R[i][k] = rks[k]^i`, by LU with partial pivoting in f32 (LAPACK's `sgesv`).
fn solve_vandermonde(rks: &[f32], b: &[f32]) -> Vec<f32> {
    let n = b.len();
    let mut a: Vec<Vec<f32>> = (0..n)
        .map(|i| rks[..n].iter().map(|&r| r.powi(i as i32)).collect())
        .collect();
    let mut x = b.to_vec();
    for col in 0..n {
        let pivot = (col..n).fold(col, |best, row| {
            if a[row][col].abs() > a[best][col].abs() {
                row
            } else {
                best
            }
        });
        a.swap(col, pivot);
        x.swap(col, pivot);
        let inv = 1.0 / a[col][col];
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let factor = row[col] * inv;
            for (value, &p) in row.iter_mut().zip(pivot_row).skip(col + 1) {
                *value -= factor * p;
            }
            x[col + 1 + offset] -= factor * x[col];
        }
    }
    for col in (0..n).rev() {
        x[col] /= a[col][col];
        for row in 0..col {
            x[row] -= x[col] * a[row][col];
        }
    }
    x
}

impl UniPcMultistep {
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Scheduled<Self>> {
        use Flag::*;
        let unsupported = [
            Thresholding,
            ExponentialSigmas,
            BetaSigmas,
            FlowSigmas,
            DynamicShifting,
        ];
        config.reject_flags(CLASS, &unsupported)?;
        let variant = match config.solver_type.as_deref().unwrap_or("bh2") {
            "bh1" => Variant::Bh1,
            "bh2" | "midpoint" | "heun" | "logrho" => Variant::Bh2,
            other => {
                return Err(config.invalid(CLASS, format!("solver_type `{other}` is not supported")))
            }
        };
        let solver_order = config.solver_order.unwrap_or(2);
        if solver_order == 0 {
            return Err(config.invalid(CLASS, "solver_order must be at least 1"));
        }
        let final_sigma_is_min = config.final_sigma_is_min(CLASS)?;
        let p = config.common(CLASS)?;
        let n = num_inference_steps;
        let train = train_sigmas(&p.alphas_cumprod);
        let mut model_timesteps = timesteps::multistep(&p, n, p.num_train_timesteps);
        let sigmas: Vec<f32> = if config.use_karras_sigmas.unwrap_or(false) {
            let log_sigmas = log_f32(&train);
            let descending: Vec<f64> = train.iter().rev().map(|&s| s as f64).collect();
            let karras = sigmas::karras(config, &descending, n);
            model_timesteps = karras
                .iter()
                .map(|&s| np_round(sigma_to_t(s, &log_sigmas)) as i64)
                .collect();
            let last = if final_sigma_is_min {
                karras.last().copied().unwrap_or(0.0)
            } else {
                0.0
            };
            karras
                .iter()
                .chain(std::iter::once(&last))
                .map(|&s| s as f32)
                .collect()
        } else {
            let last = if final_sigma_is_min { train[0] } else { 0.0 };
            model_timesteps
                .iter()
                .map(|&t| interp_train(t as f64, &train) as f32)
                .chain(std::iter::once(last))
                .collect()
        };
        let steps = Steps::multistep(
            model_timesteps.iter().map(|&t| t as f64).collect(),
            sigmas.clone(),
        );
        Ok(Scheduled::new(
            steps,
            Self {
                sigmas,
                prediction_type: p.prediction_type,
                predict_x0: config.predict_x0.unwrap_or(true),
                variant,
                solver_order,
                lower_order_final: config.lower_order_final.unwrap_or(true),
                disable_corrector: config.disable_corrector.clone().unwrap_or_default(),
                model_outputs: vec![None; solver_order],
                lower_order_nums: 0,
                this_order: 1,
                last_sample: None,
            },
        ))
    }

    /// x0 (with `predict_x0`) or epsilon from the raw model output.
    fn convert_model_output(&self, out: Tensor, x: &Tensor, index: usize) -> Result<Tensor> {
        let pt = Point::new(self.sigmas[index]);
        let (alpha, sigma) = (pt.alpha, pt.sigma);
        Ok(match (self.predict_x0, self.prediction_type) {
            (true, PredictionType::Epsilon) => ops::div(&(x - ops::mul(&out, sigma)?)?, alpha)?,
            (true, PredictionType::Sample) => out,
            (true, PredictionType::VPrediction) => ops::lin2(alpha, x, -sigma, &out)?,
            (false, PredictionType::Epsilon) => out,
            (false, PredictionType::Sample) => ops::div(&(x - ops::mul(&out, alpha)?)?, sigma)?,
            (false, PredictionType::VPrediction) => ops::lin2(alpha, &out, sigma, x)?,
        })
    }

    /// The k-th most recent converted output (0 = newest).
    fn history(&self, k: usize) -> Result<&Tensor> {
        self.model_outputs[self.solver_order - 1 - k]
            .as_ref()
            .ok_or_else(|| CoreError::InvalidInput("UniPC history is missing a step".into()))
    }

    /// `x_t_ = (sigma_t / sigma_s0) * x - (alpha_t * h_phi_1) * m0` (or its noise-prediction twin), and the
    /// factor the correction terms are multiplied by.
    fn base_update(
        &self,
        x: &Tensor,
        m0: &Tensor,
        t: Point,
        s0: Point,
        h_phi_1: f32,
        b_h: f32,
    ) -> Result<(Tensor, f32)> {
        if self.predict_x0 {
            let base = (ops::mul(x, t.sigma / s0.sigma)? - ops::mul(m0, t.alpha * h_phi_1)?)?;
            Ok((base, t.alpha * b_h))
        } else {
            let base = (ops::mul(x, t.alpha / s0.alpha)? - ops::mul(m0, t.sigma * h_phi_1)?)?;
            Ok((base, t.sigma * b_h))
        }
    }

    /// `sum_k rhos[k] * d1s[k]`.
    fn weighted_sum(rhos: &[f32], d1s: &[Tensor]) -> Result<Option<Tensor>> {
        let mut acc: Option<Tensor> = None;
        for (rho, d) in rhos.iter().zip(d1s) {
            let term = ops::mul(d, *rho)?;
            acc = Some(match acc {
                Some(a) => (a + term)?,
                None => term,
            });
        }
        Ok(acc)
    }

    /// The differences `(m_i - m0) / r_i` to older outputs and their log-SNR ratios `r_i`, for `order - 1`
    /// older points; `older(i)` gives the sigma index of the i-th older point.
    fn differences(
        &self,
        order: usize,
        m0: &Tensor,
        s0: Point,
        h: f32,
        older: impl Fn(usize) -> usize,
    ) -> Result<(Vec<f32>, Vec<Tensor>)> {
        let mut rks = Vec::with_capacity(order);
        let mut d1s = Vec::with_capacity(order);
        for i in 1..order {
            let si = Point::new(self.sigmas[older(i)]);
            let rk = (si.lambda - s0.lambda) / h;
            d1s.push(ops::div(&(self.history(i)? - m0)?, rk)?);
            rks.push(rk);
        }
        rks.push(1.0);
        Ok((rks, d1s))
    }

    /// UniP: predicts the sample at `sigmas[index + 1]`.
    fn predictor(&self, x: &Tensor, index: usize, order: usize) -> Result<Tensor> {
        let m0 = self.history(0)?;
        let t = Point::new(self.sigmas[index + 1]);
        let s0 = Point::new(self.sigmas[index]);
        let h = t.lambda - s0.lambda;
        let (rks, d1s) = self.differences(order, m0, s0, h, |i| index - i)?;
        let hh = if self.predict_x0 { -h } else { h };
        let (b, h_phi_1, b_h) = coefficients(hh, self.variant, order);
        let (base, factor) = self.base_update(x, m0, t, s0, h_phi_1, b_h)?;
        if d1s.is_empty() {
            return Ok(base);
        }
        let rhos = if order == 2 {
            vec![0.5]
        } else {
            solve_vandermonde(&rks[..order - 1], &b[..order - 1])
        };
        match Self::weighted_sum(&rhos, &d1s)? {
            Some(res) => Ok((base - ops::mul(&res, factor)?)?),
            None => Ok(base),
        }
    }

    /// UniC: corrects the previous prediction `this_sample` using the new converted output `model_t`.
    fn corrector(
        &self,
        model_t: &Tensor,
        last_sample: &Tensor,
        index: usize,
        order: usize,
    ) -> Result<Tensor> {
        let m0 = self.history(0)?;
        let t = Point::new(self.sigmas[index]);
        let s0 = Point::new(self.sigmas[index - 1]);
        let h = t.lambda - s0.lambda;
        let (rks, d1s) = self.differences(order, m0, s0, h, |i| index - (i + 1))?;
        let hh = if self.predict_x0 { -h } else { h };
        let (b, h_phi_1, b_h) = coefficients(hh, self.variant, order);
        let (base, factor) = self.base_update(last_sample, m0, t, s0, h_phi_1, b_h)?;
        let rhos = if order == 1 {
            vec![0.5]
        } else {
            solve_vandermonde(&rks, &b)
        };
        let d1_t = (model_t - m0)?;
        let last_rho = rhos.last().copied().unwrap_or(0.5);
        let new_term = ops::mul(&d1_t, last_rho)?;
        let correction = match Self::weighted_sum(&rhos[..rhos.len() - 1], &d1s)? {
            Some(res) => (res + new_term)?,
            None => new_term,
        };
        Ok((base - ops::mul(&correction, factor)?)?)
    }
}

impl Solver for UniPcMultistep {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample) = (at.index, at.model_output, at.sample);
        let len = steps.timesteps.len();
        let mut x = ops::f32(sample)?;
        let converted = self.convert_model_output(ops::f32(model_output)?, &x, index)?;
        if index > 0 && !self.disable_corrector.contains(&(index - 1)) {
            if let Some(last) = &self.last_sample {
                x = self.corrector(&converted, last, index, self.this_order)?;
            }
        }
        self.model_outputs.remove(0);
        self.model_outputs.push(Some(converted));
        let order = if self.lower_order_final {
            self.solver_order.min(len - index)
        } else {
            self.solver_order
        };
        self.this_order = order.min(self.lower_order_nums + 1);
        let prev = self.predictor(&x, index, self.this_order)?;
        self.last_sample = Some(x);
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        ops::like(prev, sample)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vandermonde_solve_recovers_known_solution() {
        let rks = [0.5f32, 1.0];
        // R = [[1, 1], [0.5, 1]], x = [2, 3] -> b = [5, 4].
        let x = solve_vandermonde(&rks, &[5.0, 4.0]);
        assert!(
            (x[0] - 2.0).abs() < 1e-6 && (x[1] - 3.0).abs() < 1e-6,
            "{x:?}"
        );
        let rks3 = [-0.7f32, -1.6, 1.0];
        let truth = [0.3f32, -1.2, 2.0];
        let b: Vec<f32> = (0..3)
            .map(|i| (0..3).map(|k| rks3[k].powi(i) * truth[k]).sum())
            .collect();
        let x = solve_vandermonde(&rks3, &b);
        assert!(
            x.iter().zip(truth).all(|(a, t)| (a - t).abs() < 1e-5),
            "{x:?}"
        );
    }

    #[test]
    fn bh2_first_coefficient_is_phi_ratio() {
        let (b, h_phi_1, b_h) = coefficients(-0.3, Variant::Bh2, 1);
        assert_eq!(h_phi_1, b_h);
        let expected = ((-0.3f64).exp_m1() / -0.3 - 1.0) / (-0.3f64).exp_m1();
        assert!((b[0] as f64 - expected).abs() < 1e-6);
    }
}
