//! The functional ops between layers: GEGLU, the resnets' per-channel shift and softmax, each one fused
//! kernel on CUDA and candle's composition elsewhere.

use candle_core::{Tensor, D};

use super::Path;

/// GEGLU: `h[..., :n] * gelu_erf(h[..., n:])` for `h` of last dimension `2n`.
pub fn geglu(h: &Tensor) -> candle_core::Result<Tensor> {
    match Path::of(h) {
        #[cfg(feature = "cuda")]
        Path::Cuda => crate::cuda::geglu(h),
        // CPU kernels (crate::cpu) plug in here.
        Path::Cpu | Path::Other => {
            let half = h.dim(D::Minus1)? / 2;
            let value = h.narrow(D::Minus1, 0, half)?;
            let gate = h.narrow(D::Minus1, half, half)?;
            value * gate.gelu_erf()?
        }
    }
}

/// `x` `[n, c, h, w]` plus a per-image, per-channel `shift` `[n, c]` (the resnets' time embedding).
pub fn add_per_channel(x: &Tensor, shift: &Tensor) -> candle_core::Result<Tensor> {
    match Path::of(x) {
        #[cfg(feature = "cuda")]
        Path::Cuda => {
            let (n, c, h, w) = x.dims4()?;
            // Rows of [1, n * c, h * w] take shift[row], which is shift[image, channel].
            let rows = x.contiguous()?.reshape((1, n * c, h * w))?;
            crate::cuda::add_bias_channels(&rows, &shift.reshape(n * c)?)?.reshape((n, c, h, w))
        }
        Path::Cpu | Path::Other => x.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?),
    }
}

/// `softmax` over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    match Path::of(x) {
        #[cfg(feature = "cuda")]
        Path::Cuda => crate::cuda::softmax_last_dim(x),
        Path::Cpu | Path::Other => candle_nn::ops::softmax_last_dim(x),
    }
}

/// [`softmax_last_dim`] reusing `x`'s memory on CUDA (the caller gives up `x`).
pub fn softmax_last_dim_owned(x: Tensor) -> candle_core::Result<Tensor> {
    match Path::of(&x) {
        #[cfg(feature = "cuda")]
        Path::Cuda => crate::cuda::softmax_last_dim_in_place(x),
        Path::Cpu | Path::Other => candle_nn::ops::softmax_last_dim(&x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn plain_geglu_gates_the_first_half_with_the_second() {
        let h = Tensor::new(&[[1f32, 2.0, 0.0, 3.0]], &Device::Cpu).unwrap();
        let out = geglu(&h).unwrap().to_vec2::<f32>().unwrap();
        let gelu3 = 0.5 * 3.0 * (1.0 + libm_erf(3.0 / 2f64.sqrt()));
        assert_eq!(out[0][0], 0.0);
        assert!((out[0][1] as f64 - 2.0 * gelu3).abs() < 1e-5);
    }

    fn libm_erf(x: f64) -> f64 {
        // Abramowitz-Stegun 7.1.26 is too coarse for 1e-5; integrate exp(-t^2) instead.
        let n = 100_000;
        let h = x / n as f64;
        let sum: f64 = (0..n)
            .map(|i| (-(h * (i as f64 + 0.5)).powi(2)).exp())
            .sum();
        sum * h * 2.0 / std::f64::consts::PI.sqrt()
    }
}
