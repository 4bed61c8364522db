//! Small f32 tensor helpers for the schedulers' update rules.
//!
//! diffusers multiplies and divides tensors by 0-d f32 tensors; these helpers do the same single-rounding f32
//! operation (a multiplication by an f32 value, or a true division rather than a multiplication by a
//! reciprocal), so our step outputs round like theirs.

use candle_core::{DType, Tensor};

use crate::Result;

/// The tensor as f32 (a no-op when it already is).
pub(crate) fn f32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}

/// `s * t` for an f32 scalar `s`.
pub(crate) fn mul(t: &Tensor, s: f32) -> Result<Tensor> {
    Ok(t.affine(s as f64, 0.0)?)
}

/// `t / s` for an f32 scalar `s`.
pub(crate) fn div(t: &Tensor, s: f32) -> Result<Tensor> {
    let s = Tensor::new(s, t.device())?.to_dtype(t.dtype())?;
    Ok(t.broadcast_div(&s)?)
}

/// `a * x + b * y` for f32 scalars, each product rounded before the sum (as torch evaluates it).
pub(crate) fn lin2(a: f32, x: &Tensor, b: f32, y: &Tensor) -> Result<Tensor> {
    Ok((mul(x, a)? + mul(y, b)?)?)
}

/// Casts a result computed in f32 back to the dtype of the sample it replaces.
pub(crate) fn like(t: Tensor, sample: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(sample.dtype())?)
}

/// DDPM forward noising `sqrt(a) * original + sqrt(1 - a) * noise` at `alpha_cumprod` `a` (the `add_noise` of
/// DDIM, PNDM and LCM), in f32 and returned in the original's dtype.
pub(crate) fn add_noise_at_alpha(
    original: &Tensor,
    noise: &Tensor,
    alpha_cumprod: f32,
) -> Result<Tensor> {
    let sqrt = super::schedule::sqrt_f32;
    let noisy = lin2(
        sqrt(alpha_cumprod),
        &f32(original)?,
        sqrt(1.0 - alpha_cumprod),
        &f32(noise)?,
    )?;
    like(noisy, original)
}
