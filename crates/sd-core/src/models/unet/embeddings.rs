//! Sinusoidal timestep features (`Timesteps`) and the MLP that embeds them (`TimestepEmbedding`).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, linear_no_bias, Linear, VarBuilder};

/// diffusers' `get_timestep_embedding` with max_period 10000 and scale 1, computed in f32.
pub fn timestep_features(
    timesteps: &[f64],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (-(10000f64.ln()) as f32) * i as f32 / (half as f32 - freq_shift as f32);
            exponent.exp()
        })
        .collect();
    let mut data = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t as f32 * f).collect();
        let (first, second): (Vec<f32>, Vec<f32>) = if flip_sin_to_cos {
            (
                args.iter().map(|a| a.cos()).collect(),
                args.iter().map(|a| a.sin()).collect(),
            )
        } else {
            (
                args.iter().map(|a| a.sin()).collect(),
                args.iter().map(|a| a.cos()).collect(),
            )
        };
        data.extend(first);
        data.extend(second);
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::from_vec(data, (timesteps.len(), dim), device)
}

/// `linear_1` -> SiLU -> `linear_2`, with the optional `cond_proj` of LCM-distilled UNets.
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    cond_proj: Option<Linear>,
}

impl TimestepEmbedding {
    pub fn new(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        cond_dim: Option<usize>,
    ) -> candle_core::Result<Self> {
        let cond_proj = match cond_dim {
            Some(c) => Some(linear_no_bias(c, in_dim, vb.pp("cond_proj"))?),
            None => None,
        };
        Ok(Self {
            linear_1: linear(in_dim, out_dim, vb.pp("linear_1"))?,
            linear_2: linear(out_dim, out_dim, vb.pp("linear_2"))?,
            cond_proj,
        })
    }

    pub fn forward(
        &self,
        features: &Tensor,
        condition: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let x = match (&self.cond_proj, condition) {
            (Some(proj), Some(c)) => (features + proj.forward(c)?)?,
            _ => features.clone(),
        };
        self.linear_2
            .forward(&candle_nn::ops::silu(&self.linear_1.forward(&x)?)?)
    }
}

/// Casts f32 features to the model dtype, as diffusers does before `time_embedding`.
pub fn to_model_dtype(t: Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if t.dtype() == dtype {
        Ok(t)
    } else {
        t.to_dtype(dtype)
    }
}
