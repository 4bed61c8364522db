//! LayerNorm with affine weight and bias (eps as given): one fused kernel on CUDA for rows the kernel takes
//! (every width of the SD models), candle-nn's otherwise.

use candle_core::{Module, Tensor};

#[derive(Clone, Debug)]
pub struct LayerNorm {
    plain: candle_nn::LayerNorm,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    eps: f64,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let (super::Path::Cuda, Some(b)) = (super::Path::of(x), self.plain.bias()) {
            if let Some(y) = crate::cuda::layer_norm(x, self.plain.weight(), b, self.eps)? {
                return Ok(y);
            }
        }
        // CPU kernels (crate::cpu) plug in here (`Path::Cpu`).
        self.plain.forward(x)
    }
}

/// Reads `weight` and `bias` of a LayerNorm over `dim`, as `candle_nn::layer_norm`.
pub fn layer_norm(
    dim: usize,
    eps: f64,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm {
        plain: candle_nn::layer_norm(dim, eps, vb)?,
        eps,
    })
}
