//! DPM-Solver++ multistep (Lu et al., 2022), matching diffusers 0.42 `DPMSolverMultistepScheduler`; with its
//! defaults (`dpmsolver++`, `solver_order` 2, `midpoint`) this is A1111's "DPM++ 2M", and with
//! `use_karras_sigmas` "DPM++ 2M Karras". Also supports `algorithm_type` dpmsolver, orders 1-3, the `heun`
//! solver type, epsilon / v_prediction / sample, all timestep spacings, `lower_order_final`,
//! `euler_at_final`, `final_sigmas_type`, `lambda_min_clipped` and `rescale_betas_zero_snr`.

use candle_core::Tensor;

use super::config::{Flag, PredictionType, SchedulerClass, SchedulerConfig};
use super::schedule::{interp_train, log_f32, np_round, sigma_to_t, sqrt_f32, train_sigmas};
use super::sigmas::{self, Point};
use super::{ops, timesteps, Scheduled, Solver, StepInput, Steps};
use crate::Result;

const CLASS: SchedulerClass = SchedulerClass::DpmSolverMultistep;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    /// Data-prediction (x0) form: DPM-Solver++.
    DpmSolverPlusPlus,
    /// Noise-prediction form: the original DPM-Solver.
    DpmSolver,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SolverType {
    Midpoint,
    Heun,
}

pub struct DpmSolverMultistep {
    prediction_type: PredictionType,
    algorithm: Algorithm,
    solver_type: SolverType,
    solver_order: usize,
    lower_order_final: bool,
    euler_at_final: bool,
    final_sigma_is_zero: bool,
    /// Converted model outputs of the last `solver_order` steps, oldest first.
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
    sigmas: Vec<f32>,
}

fn exp(x: f32) -> f32 {
    (x as f64).exp() as f32
}

impl DpmSolverMultistep {
    /// `use_karras_sigmas` overrides the config's value (the DPM++ 2M / DPM++ 2M Karras samplers).
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
        use_karras_sigmas: bool,
    ) -> Result<Scheduled<Self>> {
        use Flag::*;
        let unsupported = [
            Thresholding,
            ExponentialSigmas,
            BetaSigmas,
            LuLambdas,
            FlowSigmas,
            DynamicShifting,
        ];
        config.reject_flags(CLASS, &unsupported)?;
        if let Some(variance_type) = &config.variance_type {
            return Err(config.invalid(
                CLASS,
                format!("variance_type `{variance_type}` is not supported"),
            ));
        }
        let algorithm = match config.algorithm_type.as_deref().unwrap_or("dpmsolver++") {
            "dpmsolver++" | "deis" => Algorithm::DpmSolverPlusPlus,
            "dpmsolver" => Algorithm::DpmSolver,
            other => {
                return Err(
                    config.invalid(CLASS, format!("algorithm_type `{other}` is not supported"))
                )
            }
        };
        let solver_type = match config.solver_type.as_deref().unwrap_or("midpoint") {
            "midpoint" | "logrho" | "bh1" | "bh2" => SolverType::Midpoint,
            "heun" => SolverType::Heun,
            other => {
                return Err(config.invalid(CLASS, format!("solver_type `{other}` is not supported")))
            }
        };
        let solver_order = config.solver_order.unwrap_or(2);
        if solver_order == 0 {
            return Err(config.invalid(CLASS, "solver_order must be at least 1"));
        }
        let final_sigma_is_zero = !config.final_sigma_is_min(CLASS)?;
        if algorithm == Algorithm::DpmSolver && final_sigma_is_zero {
            return Err(config.invalid(
                CLASS,
                "final_sigmas_type `zero` needs algorithm_type dpmsolver++",
            ));
        }
        let p = config.common(CLASS)?;
        let n = num_inference_steps;
        let train = train_sigmas(&p.alphas_cumprod);

        let last_timestep =
            p.num_train_timesteps - clipped_steps(&p.alphas_cumprod, config.lambda_min_clipped);
        let mut model_timesteps: Vec<i64> = timesteps::multistep(&p, n, last_timestep);
        let base_sigmas: Vec<f64> = if use_karras_sigmas {
            let log_sigmas = log_f32(&train);
            let descending: Vec<f64> = train.iter().rev().map(|&s| s as f64).collect();
            let karras = sigmas::karras(config, &descending, n);
            let cosine = config.beta_schedule.as_deref() == Some("squaredcos_cap_v2");
            model_timesteps = karras
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    (if cosine { t } else { np_round(t) }) as i64
                })
                .collect();
            karras
        } else {
            model_timesteps
                .iter()
                .map(|&t| interp_train(t as f64, &train))
                .collect()
        };
        let last = if final_sigma_is_zero { 0.0 } else { train[0] };
        let sigmas: Vec<f32> = base_sigmas
            .iter()
            .map(|&s| s as f32)
            .chain(std::iter::once(last))
            .collect();
        let steps = Steps::multistep(
            model_timesteps.iter().map(|&t| t as f64).collect(),
            sigmas.clone(),
        );
        Ok(Scheduled::new(
            steps,
            Self {
                sigmas,
                prediction_type: p.prediction_type,
                algorithm,
                solver_type,
                solver_order,
                lower_order_final: config.lower_order_final.unwrap_or(true),
                euler_at_final: config.euler_at_final.unwrap_or(false),
                final_sigma_is_zero,
                model_outputs: vec![None; solver_order],
                lower_order_nums: 0,
            },
        ))
    }

    /// diffusers' `convert_model_output`: x0 for DPM-Solver++, epsilon for DPM-Solver.
    fn convert_model_output(&self, out: Tensor, x: &Tensor, index: usize) -> Result<Tensor> {
        let (alpha, sigma) = sigmas::alpha_sigma(self.sigmas[index]);
        Ok(match (self.algorithm, self.prediction_type) {
            (Algorithm::DpmSolverPlusPlus, PredictionType::Epsilon) => {
                ops::div(&(x - ops::mul(&out, sigma)?)?, alpha)?
            }
            (Algorithm::DpmSolverPlusPlus, PredictionType::Sample) => out,
            (Algorithm::DpmSolverPlusPlus, PredictionType::VPrediction) => {
                ops::lin2(alpha, x, -sigma, &out)?
            }
            (Algorithm::DpmSolver, PredictionType::Epsilon) => out,
            (Algorithm::DpmSolver, PredictionType::Sample) => {
                ops::div(&(x - ops::mul(&out, alpha)?)?, sigma)?
            }
            (Algorithm::DpmSolver, PredictionType::VPrediction) => {
                ops::lin2(alpha, &out, sigma, x)?
            }
        })
    }

    /// The lambdas, alphas and sigmas at `sigmas[index + 1]` (target) and `sigmas[index - k]` for k in 0..order.
    fn points(&self, index: usize, order: usize) -> (Point, Vec<Point>) {
        let target = Point::new(self.sigmas[index + 1]);
        let sources = (0..order)
            .map(|k| Point::new(self.sigmas[index - k]))
            .collect();
        (target, sources)
    }

    fn first_order(&self, m0: &Tensor, x: &Tensor, index: usize) -> Result<Tensor> {
        let (t, s) = self.points(index, 1);
        let h = t.lambda - s[0].lambda;
        Ok(match self.algorithm {
            Algorithm::DpmSolverPlusPlus => {
                (ops::mul(x, t.sigma / s[0].sigma)? - ops::mul(m0, t.alpha * (exp(-h) - 1.0))?)?
            }
            Algorithm::DpmSolver => {
                (ops::mul(x, t.alpha / s[0].alpha)? - ops::mul(m0, t.sigma * (exp(h) - 1.0))?)?
            }
        })
    }

    fn second_order(&self, m: [&Tensor; 2], x: &Tensor, index: usize) -> Result<Tensor> {
        let (t, s) = self.points(index, 2);
        let h = t.lambda - s[0].lambda;
        let h0 = s[0].lambda - s[1].lambda;
        let r0 = h0 / h;
        let d0 = m[0];
        let d1 = ops::mul(&(m[0] - m[1])?, 1.0 / r0)?;
        Ok(match (self.algorithm, self.solver_type) {
            (Algorithm::DpmSolverPlusPlus, SolverType::Midpoint) => {
                let c = t.alpha * (exp(-h) - 1.0);
                ((ops::mul(x, t.sigma / s[0].sigma)? - ops::mul(d0, c)?)?
                    - ops::mul(&d1, 0.5 * c)?)?
            }
            (Algorithm::DpmSolverPlusPlus, SolverType::Heun) => {
                let c = t.alpha * (exp(-h) - 1.0);
                let c1 = t.alpha * ((exp(-h) - 1.0) / h + 1.0);
                ((ops::mul(x, t.sigma / s[0].sigma)? - ops::mul(d0, c)?)? + ops::mul(&d1, c1)?)?
            }
            (Algorithm::DpmSolver, SolverType::Midpoint) => {
                let c = t.sigma * (exp(h) - 1.0);
                ((ops::mul(x, t.alpha / s[0].alpha)? - ops::mul(d0, c)?)?
                    - ops::mul(&d1, 0.5 * c)?)?
            }
            (Algorithm::DpmSolver, SolverType::Heun) => {
                let c = t.sigma * (exp(h) - 1.0);
                let c1 = t.sigma * ((exp(h) - 1.0) / h - 1.0);
                ((ops::mul(x, t.alpha / s[0].alpha)? - ops::mul(d0, c)?)? - ops::mul(&d1, c1)?)?
            }
        })
    }

    fn third_order(&self, m: [&Tensor; 3], x: &Tensor, index: usize) -> Result<Tensor> {
        let (t, s) = self.points(index, 3);
        let h = t.lambda - s[0].lambda;
        let h0 = s[0].lambda - s[1].lambda;
        let h1 = s[1].lambda - s[2].lambda;
        let (r0, r1) = (h0 / h, h1 / h);
        let d1_0 = ops::mul(&(m[0] - m[1])?, 1.0 / r0)?;
        let d1_1 = ops::mul(&(m[1] - m[2])?, 1.0 / r1)?;
        let d1_diff = (&d1_0 - &d1_1)?;
        let d1 = (&d1_0 + ops::mul(&d1_diff, r0 / (r0 + r1))?)?;
        let d2 = ops::mul(&d1_diff, 1.0 / (r0 + r1))?;
        Ok(match self.algorithm {
            Algorithm::DpmSolverPlusPlus => {
                let e = exp(-h) - 1.0;
                let first = (ops::mul(x, t.sigma / s[0].sigma)? - ops::mul(m[0], t.alpha * e)?)?;
                let second = (first + ops::mul(&d1, t.alpha * (e / h + 1.0))?)?;
                (second - ops::mul(&d2, t.alpha * ((e + h) / (h * h) - 0.5))?)?
            }
            Algorithm::DpmSolver => {
                let e = exp(h) - 1.0;
                let first = (ops::mul(x, t.alpha / s[0].alpha)? - ops::mul(m[0], t.sigma * e)?)?;
                let second = (first - ops::mul(&d1, t.sigma * (e / h - 1.0))?)?;
                (second - ops::mul(&d2, t.sigma * ((e - h) / (h * h) - 0.5))?)?
            }
        })
    }
}

/// How many of the noisiest training timesteps `lambda_min_clipped` removes (`searchsorted` on the flipped
/// lambdas); none for the default of minus infinity.
fn clipped_steps(alphas_cumprod: &[f32], lambda_min_clipped: Option<f64>) -> usize {
    let Some(min) = lambda_min_clipped else {
        return 0;
    };
    alphas_cumprod
        .iter()
        .rev()
        .filter(|&&a| (sigmas::lambda(sqrt_f32(a), sqrt_f32(1.0 - a)) as f64) < min)
        .count()
}

impl Solver for DpmSolverMultistep {
    fn step(&mut self, steps: &Steps, at: StepInput<'_>) -> Result<Tensor> {
        let (index, model_output, sample) = (at.index, at.model_output, at.sample);
        let len = steps.timesteps.len();
        let few_steps = self.lower_order_final && len < 15;
        let final_first_order =
            index == len - 1 && (self.euler_at_final || few_steps || self.final_sigma_is_zero);
        let final_second_order = index + 2 == len && few_steps;

        let x = ops::f32(sample)?;
        let converted = self.convert_model_output(ops::f32(model_output)?, &x, index)?;
        self.model_outputs.remove(0);
        self.model_outputs.push(Some(converted.clone()));

        let history = |k: usize| -> Result<&Tensor> {
            self.model_outputs[self.solver_order - 1 - k]
                .as_ref()
                .ok_or_else(|| {
                    crate::CoreError::InvalidInput("DPM-Solver history is missing a step".into())
                })
        };
        let prev = if self.solver_order == 1 || self.lower_order_nums < 1 || final_first_order {
            self.first_order(&converted, &x, index)?
        } else if self.solver_order == 2 || self.lower_order_nums < 2 || final_second_order {
            self.second_order([history(0)?, history(1)?], &x, index)?
        } else {
            self.third_order([history(0)?, history(1)?, history(2)?], &x, index)?
        };
        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        ops::like(prev, sample)
    }
}
