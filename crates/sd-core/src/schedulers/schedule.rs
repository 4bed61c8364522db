//! Noise-schedule arithmetic shared by the schedulers: beta schedules, `alphas_cumprod`, sigmas, timestep
//! spacings, Karras sigmas and sigma -> timestep interpolation.
//!
//! diffusers builds these arrays with a mix of torch (f32) and numpy (f64) operations; each helper here
//! reproduces the precision and rounding of the call it mirrors (torch's FMA-contracted `linspace`, its
//! f64-accumulated `cumprod`, numpy's `arange`/`linspace`/`interp` and round-half-to-even), so that timesteps
//! come out identical and sigmas agree to the last bit or so.

use super::config::BetaSchedule;

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on the CPU: the first half counts up from `start`,
/// the second half down from `end`, each value a fused multiply-add (torch's kernel is FMA-contracted).
pub(crate) fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    match steps {
        0 => return Vec::new(),
        1 => return vec![start],
        _ => {}
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - i - 1) as f32, end)
            }
        })
        .collect()
}

/// `np.linspace(start, stop, num)` in f64: `i * step + start`, with the last value set to `stop` exactly.
pub(crate) fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    values[num - 1] = stop;
    values
}

/// `np.linspace(start, stop, num, endpoint=False)`.
pub(crate) fn np_linspace_open(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    let step = (stop - start) / num as f64;
    (0..num).map(|i| i as f64 * step + start).collect()
}

/// `np.arange(start, stop, step)` for floats: `ceil((stop - start) / step)` values, the first two `start` and
/// `start + step`, the rest `start + i * delta` with `delta` re-derived from those two (numpy's fill).
pub(crate) fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if !len.is_finite() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let second = start + step;
    let delta = second - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * delta,
        })
        .collect()
}

/// numpy's `round` (half to even).
pub(crate) fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// Betas from a cosine `alpha_bar`, as diffusers' `betas_for_alpha_bar` (f64 maths, f32 result).
fn betas_for_alpha_bar(num_train_timesteps: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f32> {
    let n = num_train_timesteps as f64;
    (0..num_train_timesteps)
        .map(|i| {
            let t1 = i as f64 / n;
            let t2 = (i + 1) as f64 / n;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// The training betas of a schedule.
pub(crate) fn betas(schedule: &BetaSchedule, num_train_timesteps: usize) -> Vec<f32> {
    match schedule {
        BetaSchedule::Trained(betas) => betas.iter().map(|&b| b as f32).collect(),
        BetaSchedule::Linear { start, end } => {
            torch_linspace_f32(*start, *end, num_train_timesteps)
        }
        BetaSchedule::ScaledLinear { start, end } => {
            torch_linspace_f32(start.powf(0.5), end.powf(0.5), num_train_timesteps)
                .into_iter()
                .map(|b| b * b)
                .collect()
        }
        BetaSchedule::SquaredCosCapV2 => betas_for_alpha_bar(num_train_timesteps, |t| {
            ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
                .cos()
                .powi(2)
        }),
        BetaSchedule::Exp => betas_for_alpha_bar(num_train_timesteps, |t| (t * -12.0).exp()),
    }
}

/// diffusers' `rescale_zero_terminal_snr`: shift and scale `sqrt(alphas_cumprod)` so the last step has zero SNR.
pub(crate) fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    let mut sqrt_bar: Vec<f32> = cumprod(&alphas).iter().map(|&a| sqrt_f32(a)).collect();
    let (Some(&first), Some(&last)) = (sqrt_bar.first(), sqrt_bar.last()) else {
        return betas.to_vec();
    };
    let scale = first / (first - last);
    for v in &mut sqrt_bar {
        *v = (*v - last) * scale;
    }
    let bar: Vec<f32> = sqrt_bar.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    out.extend(bar.windows(2).map(|w| 1.0 - w[1] / w[0]));
    out
}

/// `torch.cumprod` on the CPU: the running product is kept in f64, each output rounded to f32.
pub(crate) fn cumprod(values: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    values
        .iter()
        .map(|&v| {
            acc *= v as f64;
            acc as f32
        })
        .collect()
}

/// A correctly rounded f32 square root (torch's MKL-backed one may be one ulp away).
pub(crate) fn sqrt_f32(x: f32) -> f32 {
    (x as f64).sqrt() as f32
}

/// `alphas_cumprod` from betas: `cumprod(1 - betas)`.
pub(crate) fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|b| 1.0 - b).collect();
    cumprod(&alphas)
}

/// The training sigmas `sqrt((1 - alphas_cumprod) / alphas_cumprod)`, in training-timestep order.
pub(crate) fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| sqrt_f32((1.0 - a) / a))
        .collect()
}

/// `np.log` of an f32 array.
pub(crate) fn log_f32(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| (v as f64).ln() as f32).collect()
}

/// `np.interp(x, np.arange(len(fp)), fp)`: linear interpolation over the training timesteps, clamped at the ends.
pub(crate) fn interp_train(x: f64, fp: &[f32]) -> f64 {
    let Some(&first) = fp.first() else {
        return f64::NAN;
    };
    let last_index = fp.len() - 1;
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return first as f64;
    }
    if x >= last_index as f64 {
        return fp[last_index] as f64;
    }
    let j = x.floor() as usize;
    if x == j as f64 {
        return fp[j] as f64;
    }
    let slope = fp[j + 1] as f64 - fp[j] as f64;
    slope * (x - j as f64) + fp[j] as f64
}

/// Karras et al. (2022) sigmas: `n` values from `sigma_max` down to `sigma_min`, evenly spaced in `sigma^(1/7)`.
pub(crate) fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, n)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// diffusers' `_sigma_to_t`: the (fractional) training timestep whose log-sigma brackets `sigma`, interpolated
/// linearly in log space. `log_sigmas` is `np.log` of the f32 training sigmas.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    if log_sigmas.len() < 2 {
        return 0.0;
    }
    let log_sigma = sigma.max(1e-10).ln();
    // argmax of the cumulative count of `log_sigma >= log_sigmas[i]`: the first index reaching the final count.
    let mut count = 0usize;
    let mut best = (0usize, 0usize);
    for (i, &l) in log_sigmas.iter().enumerate() {
        if log_sigma - l as f64 >= 0.0 {
            count += 1;
        }
        if count > best.1 {
            best = (i, count);
        }
    }
    let low_idx = best.0.min(log_sigmas.len() - 2);
    let high_idx = low_idx + 1;
    let low = log_sigmas[low_idx];
    let high = log_sigmas[high_idx];
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// Python-style indexing of a schedule array by a (possibly negative) timestep, as `alphas_cumprod[t]` does.
/// `alphas_cumprod[t]` with Python's indexing (the final `-1` timestep of some schedules wraps around).
/// `alphas_cumprod` as DDIM, PNDM and LCM look it up, with the value before the first timestep
/// (`final_alpha_cumprod`: 1 with `set_alpha_to_one`, else `alphas_cumprod[0]`).
#[derive(Clone, Debug)]
pub(crate) struct Alphas {
    cumprod: Vec<f32>,
    final_alpha: f32,
}

impl Alphas {
    pub(crate) fn new(cumprod: Vec<f32>, set_alpha_to_one: bool) -> Self {
        let final_alpha = if set_alpha_to_one { 1.0 } else { cumprod[0] };
        Self {
            cumprod,
            final_alpha,
        }
    }

    /// `alphas_cumprod[t]` (numpy indexing).
    pub(crate) fn at(&self, t: i64) -> crate::Result<f32> {
        alpha_cumprod_at(&self.cumprod, t)
    }

    /// The alpha the step from `t` lands on: `alphas_cumprod[prev_t]`, or the final alpha before the start.
    pub(crate) fn prev(&self, prev_t: i64) -> crate::Result<f32> {
        if prev_t >= 0 {
            self.at(prev_t)
        } else {
            Ok(self.final_alpha)
        }
    }
}

pub(crate) fn alpha_cumprod_at(alphas_cumprod: &[f32], t: i64) -> crate::Result<f32> {
    py_index(alphas_cumprod, t).ok_or_else(|| {
        crate::CoreError::InvalidInput(format!("timestep {t} is outside the training schedule"))
    })
}

pub(crate) fn py_index<T: Copy>(values: &[T], index: i64) -> Option<T> {
    let len = values.len() as i64;
    let i = if index < 0 { index + len } else { index };
    if (0..len).contains(&i) {
        values.get(i as usize).copied()
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn linspace_hits_both_ends_and_is_monotonic() {
        let v = torch_linspace_f32(0.0001, 0.02, 1000);
        assert_eq!(v.len(), 1000);
        assert_eq!(v[0], 0.0001f32);
        assert_eq!(v[999], 0.02f32);
        assert!(v.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(torch_linspace_f32(3.0, 7.0, 1), vec![3.0]);
    }

    #[test]
    fn scaled_linear_betas_are_squares_of_a_linear_ramp() {
        let b = betas(
            &BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012,
            },
            1000,
        );
        assert!((b[0] as f64 - 0.00085).abs() < 1e-9);
        assert!((b[999] as f64 - 0.012).abs() < 1e-8);
        // sqrt(beta) is linear: equal second differences up to rounding.
        let r: Vec<f64> = b.iter().map(|&x| (x as f64).sqrt()).collect();
        let d0 = r[1] - r[0];
        assert!(r.windows(2).all(|w| ((w[1] - w[0]) - d0).abs() < 1e-7));
    }

    #[test]
    fn cosine_betas_are_capped() {
        let b = betas(&BetaSchedule::SquaredCosCapV2, 1000);
        assert_eq!(b.len(), 1000);
        assert!(b.iter().all(|&x| x > 0.0 && x <= 0.999));
        assert_eq!(b[999], 0.999);
    }

    #[test]
    fn zero_snr_rescale_ends_at_zero_alpha() {
        let b = betas(
            &BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012,
            },
            1000,
        );
        let r = rescale_zero_terminal_snr(&b);
        let ac = alphas_cumprod(&r);
        assert_eq!(ac[999], 0.0);
        assert!((ac[0] - alphas_cumprod(&b)[0]).abs() < 1e-6);
    }

    #[test]
    fn cumprod_accumulates_in_f64() {
        let v = vec![0.999f32; 1000];
        let c = cumprod(&v);
        assert_eq!(c[999], (0.999f32 as f64).powi(1000) as f32);
    }

    #[test]
    fn numpy_arange_counts_like_numpy() {
        assert_eq!(
            np_arange(1000.0, 0.0, -250.0),
            vec![1000.0, 750.0, 500.0, 250.0]
        );
        // 1000 / (1000 / 61) rounds up past 61, so numpy yields an extra value near zero.
        let v = np_arange(1000.0, 0.0, -1000.0 / 61.0);
        assert_eq!(v.len(), 62);
        assert!(v[61].abs() < 1e-9);
        assert!(np_arange(0.0, 10.0, -1.0).is_empty());
    }

    #[test]
    fn numpy_round_is_half_to_even() {
        assert_eq!(np_round(62.5), 62.0);
        assert_eq!(np_round(63.5), 64.0);
        assert_eq!(np_round(-0.5), -0.0);
    }

    #[test]
    fn interp_clamps_and_interpolates() {
        let fp = [1.0f32, 3.0, 7.0];
        assert_eq!(interp_train(-1.0, &fp), 1.0);
        assert_eq!(interp_train(0.5, &fp), 2.0);
        assert_eq!(interp_train(1.25, &fp), 4.0);
        assert_eq!(interp_train(9.0, &fp), 7.0);
    }

    #[test]
    fn karras_sigmas_span_min_to_max() {
        let s = karras_sigmas(0.03, 14.6, 10);
        assert_eq!(s.len(), 10);
        assert!((s[0] - 14.6).abs() < 1e-12);
        assert!((s[9] - 0.03).abs() < 1e-12);
        assert!(s.windows(2).all(|w| w[1] < w[0]));
        // Evenly spaced in sigma^(1/7).
        let r: Vec<f64> = s.iter().map(|x| x.powf(1.0 / 7.0)).collect();
        let d = r[1] - r[0];
        assert!(r.windows(2).all(|w| ((w[1] - w[0]) - d).abs() < 1e-12));
        assert_eq!(
            karras_sigmas(0.03, 14.6, 1),
            vec![14.6f64.powf(1.0 / 7.0).powf(7.0)]
        );
    }

    #[test]
    fn sigma_to_t_inverts_the_training_sigmas() {
        let ac = alphas_cumprod(&betas(
            &BetaSchedule::ScaledLinear {
                start: 0.00085,
                end: 0.012,
            },
            1000,
        ));
        let sigmas = train_sigmas(&ac);
        let logs = log_f32(&sigmas);
        for t in [0usize, 1, 250, 999] {
            assert!(
                (sigma_to_t(sigmas[t] as f64, &logs) - t as f64).abs() < 1e-3,
                "t={t}"
            );
        }
        let mid = ((sigmas[400] as f64).ln() + (sigmas[401] as f64).ln()) / 2.0;
        assert!((sigma_to_t(mid.exp(), &logs) - 400.5).abs() < 1e-3);
        assert_eq!(sigma_to_t(1e-6, &logs), 0.0);
        assert_eq!(sigma_to_t(1e6, &logs), 999.0);
    }

    #[test]
    fn py_index_wraps_negative_indices() {
        let v = [10, 20, 30];
        assert_eq!(py_index(&v, -1), Some(30));
        assert_eq!(py_index(&v, 1), Some(20));
        assert_eq!(py_index(&v, 3), None);
        assert_eq!(py_index(&v, -4), None);
    }
}
