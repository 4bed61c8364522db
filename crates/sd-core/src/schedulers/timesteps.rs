//! The inference timesteps for `leading`, `linspace` and `trailing` spacing. The scheduler families each
//! phrase the spacings slightly differently in diffusers (integer vs f32 timesteps, `n` vs `n + 1` points);
//! one function per family reproduces its values exactly, quirks included (e.g. numpy's `arange` giving an
//! extra trailing timestep of -1 for some step counts).

use super::config::{CommonParams, TimestepSpacing};
use super::schedule::{np_arange, np_linspace, np_round};

/// `np.round(np.arange(end, 0, -end / n)) - 1`, descending.
fn trailing(end: usize, train: usize, n: usize) -> Vec<f64> {
    np_arange(end as f64, 0.0, -(train as f64 / n as f64))
        .into_iter()
        .map(|t| np_round(t) - 1.0)
        .collect()
}

/// DDIMScheduler / LCM-style integer timesteps, descending.
pub(crate) fn ddim(p: &CommonParams, n: usize) -> Vec<i64> {
    let train = p.num_train_timesteps;
    match p.timestep_spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|t| np_round(t) as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (train / n) as i64;
            (0..n as i64)
                .rev()
                .map(|i| i * ratio + p.steps_offset)
                .collect()
        }
        TimestepSpacing::Trailing => trailing(train, train, n)
            .into_iter()
            .map(|t| t as i64)
            .collect(),
    }
}

/// PNDMScheduler's `_timesteps`, ascending.
pub(crate) fn pndm(p: &CommonParams, n: usize) -> Vec<i64> {
    let mut ts = ddim(p, n);
    ts.reverse();
    ts
}

/// Euler / Euler ancestral / Heun: f32 timesteps, descending; `linspace` ones are fractional.
pub(crate) fn sigma_family(p: &CommonParams, n: usize) -> Vec<f32> {
    let train = p.num_train_timesteps;
    match p.timestep_spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|t| t as f32)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (train / n) as f32;
            (0..n)
                .rev()
                .map(|i| i as f32 * ratio + p.steps_offset as f32)
                .collect()
        }
        TimestepSpacing::Trailing => trailing(train, train, n)
            .into_iter()
            .map(|t| t as f32)
            .collect(),
    }
}

/// DPMSolverMultistep / UniPCMultistep: `n + 1` points with the last dropped, descending. `last_timestep` is
/// `num_train_timesteps` unless `lambda_min_clipped` cuts the schedule short.
pub(crate) fn multistep(p: &CommonParams, n: usize, last_timestep: usize) -> Vec<i64> {
    match p.timestep_spacing {
        TimestepSpacing::Linspace => {
            let mut ts: Vec<i64> = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1)
                .into_iter()
                .rev()
                .map(|t| np_round(t) as i64)
                .collect();
            ts.pop();
            ts
        }
        TimestepSpacing::Leading => {
            let ratio = (last_timestep / (n + 1)) as i64;
            (1..=n as i64)
                .rev()
                .map(|i| i * ratio + p.steps_offset)
                .collect()
        }
        TimestepSpacing::Trailing => trailing(last_timestep, p.num_train_timesteps, n)
            .into_iter()
            .map(|t| t as i64)
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schedulers::config::{PredictionType, TimestepSpacing as S};

    fn params(spacing: S, offset: i64) -> CommonParams {
        CommonParams {
            num_train_timesteps: 1000,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: spacing,
            steps_offset: offset,
            alphas_cumprod: Vec::new(),
        }
    }

    #[test]
    fn ddim_spacings() {
        assert_eq!(ddim(&params(S::Leading, 1), 4), vec![751, 501, 251, 1]);
        assert_eq!(ddim(&params(S::Linspace, 0), 4), vec![999, 666, 333, 0]);
        assert_eq!(ddim(&params(S::Trailing, 0), 4), vec![999, 749, 499, 249]);
        assert_eq!(ddim(&params(S::Trailing, 0), 1), vec![999]);
    }

    #[test]
    fn euler_spacings_are_f32() {
        assert_eq!(
            sigma_family(&params(S::Linspace, 0), 3),
            vec![999.0, 499.5, 0.0]
        );
        assert_eq!(sigma_family(&params(S::Leading, 1), 2), vec![501.0, 1.0]);
    }

    #[test]
    fn multistep_spacings_drop_the_last_point() {
        assert_eq!(
            multistep(&params(S::Linspace, 0), 4, 1000),
            vec![999, 749, 500, 250]
        );
        assert_eq!(
            multistep(&params(S::Leading, 1), 4, 1000),
            vec![801, 601, 401, 201]
        );
        assert_eq!(
            multistep(&params(S::Trailing, 0), 4, 1000),
            vec![999, 749, 499, 249]
        );
    }
}
