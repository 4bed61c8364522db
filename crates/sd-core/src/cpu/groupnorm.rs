//! GroupNorm (affine) with an optional SiLU on the CPU: per (image, group), one pass for the mean, one for
//! the variance around it (two passes: exact where sum-of-squares would cancel), and one pass that writes
//! `silu(x * a + b)` with the per-channel `a`, `b` the weight, bias and statistics fold into.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{math, with_f32};

/// `x` `[n, c, ...]` (f32, CPU), `weight`/`bias` `[c]`; `c` divisible by `groups`.
pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 || groups == 0 || !dims[1].is_multiple_of(groups) {
        candle_core::bail!("cpu group_norm: input {dims:?} in {groups} groups")
    }
    let c = dims[1];
    let spatial: usize = dims[2..].iter().product();
    let weight = weight.to_vec1::<f32>()?;
    let bias = bias.to_vec1::<f32>()?;
    if weight.len() != c || bias.len() != c {
        candle_core::bail!(
            "cpu group_norm: {} weights, {} biases for {c} channels",
            weight.len(),
            bias.len()
        )
    }
    let per_group = c / groups;
    let block = per_group * spatial;
    let mut out = vec![0f32; x.elem_count()];
    if block > 0 {
        with_f32(x, |x| {
            out.par_chunks_mut(block)
                .zip(x.par_chunks(block))
                .enumerate()
                .for_each(|(i, (dst, src))| {
                    let first = (i % groups) * per_group;
                    let count = block as f64;
                    let (s, _) = math::sums(src, 0.0);
                    let mean = (s / count) as f32;
                    let (s, q) = math::sums(src, mean);
                    let var = (q / count - (s / count).powi(2)).max(0.0);
                    let rstd = (1.0 / (var + eps).sqrt()) as f32;
                    for (ch, (d, x)) in dst
                        .chunks_exact_mut(spatial)
                        .zip(src.chunks_exact(spatial))
                        .enumerate()
                    {
                        let a = weight[first + ch] * rstd;
                        let b = bias[first + ch] - mean * a;
                        math::affine(d, x, a, b, silu);
                    }
                });
            Ok(())
        })?;
    }
    Tensor::from_vec(out, dims, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Module};

    fn check(dims: &[usize], groups: usize, eps: f64, offset: f64) {
        let dev = Device::Cpu;
        let c = dims[1];
        let x = (Tensor::randn(0f32, 1.0, dims, &dev).unwrap() + offset).unwrap();
        let w = Tensor::randn(1f32, 0.2, c, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.2, c, &dev).unwrap();
        let plain = candle_nn::GroupNorm::new(w.clone(), b.clone(), c, groups, eps).unwrap();
        let want = plain.forward(&x).unwrap();
        let got = group_norm(&x, &w, &b, groups, eps, false).unwrap();
        let diff = crate::cpu::relative_diff(&got, &want);
        assert!(diff < 1e-5, "{dims:?} g{groups}: {diff}");
        let got = group_norm(&x, &w, &b, groups, eps, true).unwrap();
        let want = candle_nn::ops::silu(&want).unwrap();
        let diff = crate::cpu::relative_diff(&got, &want);
        assert!(diff < 1e-5, "{dims:?} g{groups} silu: {diff}");
        assert_eq!(got.dtype(), DType::F32);
    }

    #[test]
    fn unet_and_vae_shapes_match_candle() {
        check(&[2, 320, 64, 64], 32, 1e-5, 0.0);
        check(&[2, 1280, 8, 8], 32, 1e-5, 0.0);
        check(&[1, 128, 256, 256], 32, 1e-6, 0.0);
        check(&[2, 640, 32, 32], 32, 1e-6, 3.0);
    }

    #[test]
    fn odd_sizes_match_candle() {
        check(&[1, 6, 5, 7], 3, 1e-5, 0.0);
        check(&[3, 4, 1, 1], 2, 1e-5, 0.0);
        check(&[1, 9, 13], 9, 1e-3, 10.0);
    }
}
