//! The linear layer: `x W^T + b` (candle-nn's) whose bias add, and optional residual, is one fused kernel on
//! CUDA (candle's broadcast add runs at a fifth of memory bandwidth on the UNet's activations), and which can
//! carry a low-rank delta.

use candle_core::{Module, Tensor};

use super::Path;

/// A low-rank change `scale * up @ down` to a `[out, in]` weight (`down` `[rank, in]`, `up` `[out, rank]`),
/// applied at forward time as `scale * (x down^T) up^T` without touching the weight.
#[derive(Clone, Debug)]
pub struct LowRank {
    pub down: Tensor,
    pub up: Tensor,
    pub scale: f64,
}

impl LowRank {
    /// `scale * (x down^T) up^T` for `x` `[..., in]`, in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let down = self.down.to_dtype(x.dtype())?;
        let up = self.up.to_dtype(x.dtype())?;
        let h = candle_nn::Linear::new(down, None).forward(x)?;
        candle_nn::Linear::new(up, None).forward(&h)? * self.scale
    }
}

/// A linear layer like candle-nn's, with a fused bias add on CUDA and an optional unmerged [`LowRank`] delta.
#[derive(Clone, Debug)]
pub struct Linear {
    plain: candle_nn::Linear,
    delta: Option<LowRank>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            plain: candle_nn::Linear::new(weight, bias),
            delta: None,
        }
    }

    /// The layer with `delta` added to its output (replacing any earlier delta; `None` removes it).
    pub fn with_delta(mut self, delta: Option<LowRank>) -> Self {
        self.delta = delta;
        self
    }

    /// The `[out, in]` weight (shared storage: LoRAs are merged into it in place).
    pub fn weight(&self) -> &Tensor {
        self.plain.weight()
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.plain.bias()
    }

    /// `x W^T` without the bias, plus the delta if any.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(super) fn project(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.plain.weight();
        let w = match *x.dims() {
            [b1, b2, _, _] => w.broadcast_left((b1, b2))?.t()?,
            [b, _, _] => w.broadcast_left(b)?.t()?,
            _ => w.t()?,
        };
        let y = x.matmul(&w)?;
        match &self.delta {
            Some(delta) => y + delta.forward(x)?,
            None => Ok(y),
        }
    }

    /// candle-nn's forward plus the delta: the path every device without a fused kernel takes.
    fn forward_plain(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.plain.forward(x)?;
        match &self.delta {
            Some(delta) => y + delta.forward(x)?,
            None => Ok(y),
        }
    }

    /// `layer(x) + residual`, on CUDA with the bias and the residual added in one pass.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let (Path::Cuda, Some(b)) = (Path::of(x), self.plain.bias()) {
            return crate::cuda::add_bias_columns_residual(&self.project(x)?, b, residual);
        }
        if self.delta.is_none() && crate::cpu::applies(x) {
            let (w, b) = (self.plain.weight(), self.plain.bias());
            return crate::cpu::linear::linear(x, w, b, Some(residual));
        }
        self.forward(x)? + residual
    }

    /// `geglu(layer(x))` with the bias folded into the GEGLU kernel on CUDA.
    pub fn forward_geglu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match Path::of(x) {
            #[cfg(feature = "cuda")]
            Path::Cuda => {
                let h = self.project(x)?;
                match self.plain.bias() {
                    Some(b) => crate::cuda::geglu_bias(&h, b),
                    None => crate::cuda::geglu(&h),
                }
            }
            // CPU kernels (crate::cpu) plug in here.
            Path::Cpu | Path::Other => super::geglu(&self.forward_plain(x)?),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match Path::of(x) {
            #[cfg(feature = "cuda")]
            Path::Cuda => {
                let y = self.project(x)?;
                match self.plain.bias() {
                    Some(b) => crate::cuda::add_bias_columns(&y, b),
                    None => Ok(y),
                }
            }
            Path::Cpu if self.delta.is_none() && crate::cpu::applies(x) => {
                let (w, b) = (self.plain.weight(), self.plain.bias());
                crate::cpu::linear::linear(x, w, b, None)
            }
            Path::Cpu | Path::Other => self.forward_plain(x),
        }
    }
}

/// Reads `weight` `[out, in]` and `bias` `[out]`, as `candle_nn::linear`.
pub fn linear(
    in_dim: usize,
    out_dim: usize,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<Linear> {
    let plain = candle_nn::linear(in_dim, out_dim, vb)?;
    Ok(Linear::new(plain.weight().clone(), plain.bias().cloned()))
}

/// Reads `weight` `[out, in]` only.
pub fn linear_no_bias(
    in_dim: usize,
    out_dim: usize,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<Linear> {
    let plain = candle_nn::linear_no_bias(in_dim, out_dim, vb)?;
    Ok(Linear::new(plain.weight().clone(), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn a_low_rank_delta_matches_the_merged_weight() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (6, 4), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 6, &dev).unwrap();
        let down = Tensor::randn(0f32, 1.0, (2, 4), &dev).unwrap();
        let up = Tensor::randn(0f32, 1.0, (6, 2), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, 5, 4), &dev).unwrap();
        let merged_w = (&w + (up.matmul(&down).unwrap() * 0.5).unwrap()).unwrap();
        let merged = Linear::new(merged_w, Some(b.clone()));
        let delta = LowRank {
            down,
            up,
            scale: 0.5,
        };
        let layer = Linear::new(w.clone(), Some(b.clone())).with_delta(Some(delta));
        let diff = (layer.forward(&x).unwrap() - merged.forward(&x).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
        // Without the delta the layer is the base layer again, unchanged.
        let base = layer.with_delta(None).forward(&x).unwrap();
        let plain = candle_nn::Linear::new(w, Some(b)).forward(&x).unwrap();
        let same = (base - plain).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(same.to_scalar::<f32>().unwrap(), 0.0);
    }
}
