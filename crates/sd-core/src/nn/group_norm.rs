//! GroupNorm with affine weight and bias (diffusers' `nn.GroupNorm`), optionally followed by SiLU: on CUDA one
//! statistics pass and one normalisation pass (crate::cuda::group_norm).

use candle_core::{Module, Tensor};

use super::Path;

#[derive(Clone, Debug)]
pub struct GroupNorm {
    plain: candle_nn::GroupNorm,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    weight: Tensor,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    bias: Tensor,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    groups: usize,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    eps: f64,
}

impl GroupNorm {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.run(x, false)
    }

    /// `silu(group_norm(x))`, the pre-activation of every resnet block.
    pub fn forward_silu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, silu: bool) -> candle_core::Result<Tensor> {
        match Path::of(x) {
            #[cfg(feature = "cuda")]
            Path::Cuda => {
                crate::cuda::group_norm(x, &self.weight, &self.bias, self.groups, self.eps, silu)
            }
            Path::Cpu if crate::cpu::applies(x) => {
                let (w, b) = (&self.weight, &self.bias);
                crate::cpu::groupnorm::group_norm(x, w, b, self.groups, self.eps, silu)
            }
            Path::Cpu | Path::Other => {
                let y = self.plain.forward(x)?;
                if silu {
                    candle_nn::ops::silu(&y)
                } else {
                    Ok(y)
                }
            }
        }
    }
}

/// Reads `weight` and `bias` of a GroupNorm over `channels` in `groups`.
pub fn group_norm(
    groups: usize,
    channels: usize,
    eps: f64,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<GroupNorm> {
    let plain = candle_nn::group_norm(groups, channels, eps, vb.clone())?;
    Ok(GroupNorm {
        plain,
        weight: vb.get(channels, "weight")?,
        bias: vb.get(channels, "bias")?,
        groups,
        eps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn plain_group_norm_normalises_each_group_then_applies_silu() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 48.0, &dev)
            .unwrap()
            .reshape((2, 4, 2, 3))
            .unwrap();
        let vb = candle_nn::VarBuilder::from_tensors(
            [
                (
                    "n.weight".to_string(),
                    Tensor::new(&[1f32, 2.0, 1.0, 1.0], &dev).unwrap(),
                ),
                (
                    "n.bias".to_string(),
                    Tensor::new(&[0f32, 0.0, 0.5, 0.0], &dev).unwrap(),
                ),
            ]
            .into_iter()
            .collect(),
            DType::F32,
            &dev,
        );
        let norm = group_norm(2, 4, 1e-5, vb.pp("n")).unwrap();
        let y = norm.forward(&x).unwrap();
        // Group 0 of image 0 is 0..12: mean 5.5, variance 143/12.
        let first = y.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let expected = (0.0 - 5.5) / (143.0f32 / 12.0 + 1e-5).sqrt();
        assert!((first - expected).abs() < 1e-5, "{first} vs {expected}");
        let fused = norm.forward_silu(&x).unwrap();
        let manual = candle_nn::ops::silu(&y).unwrap();
        let diff = (fused - manual).unwrap().abs().unwrap().max_all().unwrap();
        // The CPU kernel's SiLU uses its own exp: equal to a few ulps, not bit for bit.
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
