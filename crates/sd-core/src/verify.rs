//! Kernel self-tests: every fused CUDA op against the plain candle composition it replaces, on random inputs
//! on the model's device (`sd-worker bench --verify-kernels` and the GPU unit test below). Elsewhere empty.

/// One comparison of a fused kernel with the plain composition it replaces.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelCheck {
    pub kernel: &'static str,
    pub case: String,
    pub relative_max_diff: f32,
    pub tolerance: f32,
}

impl KernelCheck {
    pub fn passed(&self) -> bool {
        self.relative_max_diff <= self.tolerance
    }
}

/// Runs every fused kernel against its plain composition on random inputs on `device` (CUDA builds on a CUDA
/// device); empty where no fused kernel is used.
pub fn verify_kernels(device: &candle_core::Device) -> candle_core::Result<Vec<KernelCheck>> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        let mut checks = checks::fused(device)?;
        checks.extend(checks::convolutions(device)?);
        checks.extend(checks::flash(device)?);
        return Ok(checks);
    }
    let _ = device;
    Ok(Vec::new())
}

#[cfg(feature = "cuda")]
mod checks {
    use candle_core::{DType, Module, Tensor};
    use candle_nn::Conv2dConfig;

    use super::KernelCheck;
    use crate::cuda::{self, flash};
    use crate::nn::{Conv2d, KernelOptions};

    /// [`Conv2d`](crate::nn::Conv2d)'s CUDA path (cuDNN or 1x1-as-matmul, fused bias) against candle's own convolution.
    pub(super) fn convolutions(
        device: &candle_core::Device,
    ) -> candle_core::Result<Vec<KernelCheck>> {
        let mut checks = Vec::new();
        // (in, out, kernel, padding, stride, input side)
        for (cin, cout, k, padding, stride, side) in [
            (320usize, 320usize, 3usize, 1usize, 1usize, 32usize),
            (64, 128, 3, 1, 2, 17),
            (640, 320, 1, 0, 1, 16),
            (4, 8, 3, 1, 1, 9),
        ] {
            let x = candle_core::Tensor::randn(0f32, 1.0, (2, cin, side, side), device)?;
            let w = (candle_core::Tensor::randn(0f32, 1.0, (cout, cin, k, k), device)?
                / ((cin * k * k) as f64).sqrt())?;
            let b = candle_core::Tensor::randn(0f32, 1.0, cout, device)?;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let (xd, wd, bd) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?, b.to_dtype(dtype)?);
                let cfg = Conv2dConfig {
                    padding,
                    stride,
                    ..Default::default()
                };
                let expected =
                    candle_nn::Conv2d::new(wd.clone(), Some(bd.clone()), cfg).forward(&xd)?;
                let layer = Conv2d::new(wd, Some(bd), cfg, KernelOptions::default());
                let actual = layer.forward(&xd)?;
                if actual.dims() != expected.dims() {
                    candle_core::bail!(
                        "conv2d: shape {:?} vs {:?}",
                        actual.dims(),
                        expected.dims()
                    );
                }
                checks.push(KernelCheck {
                    kernel: if cfg!(feature = "cudnn") && k > 1 {
                        "conv2d (cuDNN)"
                    } else {
                        "conv2d"
                    },
                    case: format!(
                        "{cin}->{cout} k{k} p{padding} s{stride} {side}x{side} {dtype:?}"
                    ),
                    relative_max_diff: relative_max_diff(&actual, &expected)?,
                    // TF32 (cuDNN's default for f32, as PyTorch's) rounds inputs to 10 mantissa bits.
                    tolerance: tolerance(dtype, 2e-3),
                });
                // The residual joins in the same in-place pass as the bias.
                let residual = expected.ones_like()?.affine(0.5, 0.0)?;
                let expected = (&expected + &residual)?;
                checks.push(KernelCheck {
                    kernel: "conv2d + residual",
                    case: format!(
                        "{cin}->{cout} k{k} p{padding} s{stride} {side}x{side} {dtype:?}"
                    ),
                    relative_max_diff: relative_max_diff(
                        &layer.forward_residual(&xd, &residual)?,
                        &expected,
                    )?,
                    tolerance: tolerance(dtype, 2e-3),
                });
            }
        }
        Ok(checks)
    }

    /// Largest difference relative to the expected tensor's largest magnitude (half types round per ulp).
    fn relative_max_diff(actual: &Tensor, expected: &Tensor) -> candle_core::Result<f32> {
        let f = |t: &Tensor| t.to_dtype(DType::F32);
        let scale = f(expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let d = (f(actual)? - f(expected)?)?;
        Ok(d.abs()?.max_all()?.to_scalar::<f32>()? / scale.max(1.0))
    }

    fn tolerance(dtype: DType, f32_tol: f32) -> f32 {
        match dtype {
            DType::F32 => f32_tol,
            DType::F16 => 2e-3,
            _ => 1.6e-2,
        }
    }

    /// Each fused kernel against the candle-nn composition it replaces, on random inputs on `dev`, in f32, f16
    /// and bf16: UNet- and VAE-like shapes (a VAE group spans many statistics chunks), odd sizes, and inputs offset
    /// by 20 so a cancelling variance formula would show.
    pub(super) fn fused(dev: &candle_core::Device) -> candle_core::Result<Vec<KernelCheck>> {
        let mut checks = Vec::new();
        let cases: [(&[usize], usize); 4] = [
            (&[2, 320, 64, 64], 32),
            (&[1, 128, 256, 256], 32),
            (&[3, 64, 7, 9], 8),
            (&[2, 1280, 8, 8], 32),
        ];
        for (shape, groups) in cases {
            let channels = shape[1];
            let x = (Tensor::randn(0f32, 1.5, shape, dev)? + 20.0)?;
            let w = Tensor::randn(1f32, 0.2, channels, dev)?;
            let b = Tensor::randn(0f32, 0.2, channels, dev)?;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let (xd, wd, bd) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?, b.to_dtype(dtype)?);
                let plain =
                    candle_nn::GroupNorm::new(wd.clone(), bd.clone(), channels, groups, 1e-6)?;
                let expected = candle_core::Module::forward(&plain, &xd)?;
                let expected_silu = candle_nn::ops::silu(&expected)?;
                let fused = cuda::group_norm(&xd, &wd, &bd, groups, 1e-6, false)?;
                let fused_silu = cuda::group_norm(&xd, &wd, &bd, groups, 1e-6, true)?;
                let diff = relative_max_diff(&fused, &expected)?
                    .max(relative_max_diff(&fused_silu, &expected_silu)?);
                checks.push(KernelCheck {
                    kernel: "group_norm(+silu)",
                    case: format!("{shape:?} groups {groups} {dtype:?}"),
                    relative_max_diff: diff,
                    tolerance: tolerance(dtype, 5e-5),
                });
            }
        }
        for shape in [[2usize, 4096, 2560], [1, 77, 10], [3, 5, 6]] {
            let h = Tensor::randn(0f32, 2.0, &shape, dev)?;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let hd = h.to_dtype(dtype)?;
                let half = shape[2] / 2;
                let expected = (hd.narrow(2, 0, half)? * hd.narrow(2, half, half)?.gelu_erf()?)?;
                let fused = cuda::geglu(&hd)?;
                if fused.dims() != expected.dims() {
                    candle_core::bail!("geglu: shape {:?} vs {:?}", fused.dims(), expected.dims());
                }
                let bias = Tensor::randn(0f32, 1.0, shape[2], dev)?.to_dtype(dtype)?;
                let biased = hd.broadcast_add(&bias)?;
                let expected_bias =
                    (biased.narrow(2, 0, half)? * biased.narrow(2, half, half)?.gelu_erf()?)?;
                checks.push(KernelCheck {
                    kernel: "geglu_bias",
                    case: format!("{shape:?} {dtype:?}"),
                    relative_max_diff: relative_max_diff(
                        &cuda::geglu_bias(&hd, &bias)?,
                        &expected_bias,
                    )?,
                    tolerance: tolerance(dtype, 1e-6),
                });
                checks.push(KernelCheck {
                    kernel: "geglu",
                    case: format!("{shape:?} {dtype:?}"),
                    relative_max_diff: relative_max_diff(&fused, &expected)?,
                    tolerance: tolerance(dtype, 1e-6),
                });
            }
        }
        let softmax_cases: [(&[usize], f64); 5] = [
            (&[2, 8, 256, 4096], 4.0),
            (&[2, 8, 64, 77], 8.0),
            (&[3, 5, 7], 1.0),
            (&[4, 1000], 2.0),
            (&[2, 16, 9000], 1.0),
        ];
        for (shape, scale) in softmax_cases {
            let x = (Tensor::randn(0f32, 1.0, shape, dev)? * scale)?;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let xd = x.to_dtype(dtype)?;
                let expected = candle_nn::ops::softmax_last_dim(&xd)?;
                checks.push(KernelCheck {
                    kernel: "softmax_last_dim",
                    case: format!("{shape:?} {dtype:?}"),
                    relative_max_diff: relative_max_diff(&cuda::softmax_last_dim(&xd)?, &expected)?,
                    tolerance: tolerance(dtype, 1e-5),
                });
                let in_place = cuda::softmax_last_dim_in_place(xd.copy()?)?;
                checks.push(KernelCheck {
                    kernel: "softmax_last_dim_in_place",
                    case: format!("{shape:?} {dtype:?}"),
                    relative_max_diff: relative_max_diff(&in_place, &expected)?,
                    tolerance: tolerance(dtype, 1e-5),
                });
            }
        }
        let x = Tensor::randn(0f32, 1.0, (2, 320, 24, 20), dev)?;
        let bc = Tensor::randn(0f32, 1.0, 320, dev)?;
        let rows = Tensor::randn(0f32, 1.0, (2, 77, 640), dev)?;
        let bcol = Tensor::randn(0f32, 1.0, 640, dev)?;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let (xd, bd) = (x.to_dtype(dtype)?, bc.to_dtype(dtype)?);
            let expected = xd.broadcast_add(&bd.reshape((1, 320, 1, 1))?)?;
            checks.push(KernelCheck {
                kernel: "bias_channels",
                case: format!("[2, 320, 24, 20] {dtype:?}"),
                relative_max_diff: relative_max_diff(
                    &cuda::add_bias_channels(&xd, &bd)?,
                    &expected,
                )?,
                tolerance: tolerance(dtype, 1e-6),
            });
            let expected_res = (&expected + &xd)?;
            checks.push(KernelCheck {
                kernel: "bias_channels_residual",
                case: format!("[2, 320, 24, 20] {dtype:?}"),
                relative_max_diff: relative_max_diff(
                    &cuda::add_bias_channels_residual(&xd, &bd, &xd)?,
                    &expected_res,
                )?,
                tolerance: tolerance(dtype, 1e-6),
            });
            let (rd, bd) = (rows.to_dtype(dtype)?, bcol.to_dtype(dtype)?);
            let expected = rd.broadcast_add(&bd)?;
            checks.push(KernelCheck {
                kernel: "bias_columns",
                case: format!("[2, 77, 640] {dtype:?}"),
                relative_max_diff: relative_max_diff(
                    &cuda::add_bias_columns(&rd, &bd)?,
                    &expected,
                )?,
                tolerance: tolerance(dtype, 1e-6),
            });
            let expected_res = (&expected + &rd)?;
            checks.push(KernelCheck {
                kernel: "bias_columns_residual",
                case: format!("[2, 77, 640] {dtype:?}"),
                relative_max_diff: relative_max_diff(
                    &cuda::add_bias_columns_residual(&rd, &bd, &rd)?,
                    &expected_res,
                )?,
                tolerance: tolerance(dtype, 1e-6),
            });
        }
        for (rows, cols) in [
            (8192usize, 320usize),
            (2000, 640),
            (2048, 1280),
            (77, 768),
            (5, 100),
            (3, 2048),
            (4, 4096),
        ] {
            let x = (Tensor::randn(0f32, 2.0, (2, rows / 2 + 1, cols), dev)? + 3.0)?;
            let w = Tensor::randn(1f32, 0.2, cols, dev)?;
            let b = Tensor::randn(0f32, 0.2, cols, dev)?;
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let (xd, wd, bd) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?, b.to_dtype(dtype)?);
                let plain = candle_nn::LayerNorm::new(wd.clone(), bd.clone(), 1e-5);
                let expected = candle_core::Module::forward(&plain, &xd)?;
                // Rows that are not a whole number of 16-byte vectors, or wider than 512 of them, are left to candle
                // (`None`); every width of the SD models must take the kernel.
                let takes = cuda::takes_layer_norm(cols, dtype.size_in_bytes());
                if [320, 640, 768, 1280, 2048].contains(&cols) && !takes {
                    candle_core::bail!(
                        "layer_norm: {cols} columns of {dtype:?} should take the fused kernel"
                    );
                }
                let actual = match (cuda::layer_norm(&xd, &wd, &bd, 1e-5)?, takes) {
                    (Some(actual), true) => actual,
                    (None, false) => continue,
                    (got, _) => candle_core::bail!(
                        "layer_norm: {cols} columns of {dtype:?}: kernel expected {takes}, ran {}",
                        got.is_some()
                    ),
                };
                checks.push(KernelCheck {
                    kernel: "layer_norm",
                    case: format!("[2, {}, {cols}] {dtype:?}", rows / 2 + 1),
                    relative_max_diff: relative_max_diff(&actual, &expected)?,
                    tolerance: tolerance(dtype, 5e-5),
                });
            }
        }
        Ok(checks)
    }

    /// Flash attention against softmax(q k^T / sqrt(d)) v computed in f32 with candle ops, per padded width.
    pub(super) fn flash(dev: &candle_core::Device) -> candle_core::Result<Vec<KernelCheck>> {
        let mut checks = Vec::new();
        if !flash::device_supports(dev) {
            return Ok(checks);
        }
        // (batch, heads, n, m, d): self- and cross-attention shapes of SD 1.5 (40/80/160) and SDXL (64), partial
        // tiles. Self-attention cases (n == m) read q/k/v as views into one fused projection output, cross-attention
        // cases read k/v as views into a fused k/v output, as the UNet does.
        let cases = [
            (2, 8, 300, 77, 40),
            (2, 10, 1000, 1000, 64),
            (1, 8, 256, 300, 80),
            (2, 2, 100, 77, 128),
            (2, 8, 64, 77, 160),
            (2, 5, 200, 200, 160),
            (1, 3, 130, 130, 48),
        ];
        for (b, h, n, m, d) in cases {
            let w = h * d;
            let (q, k, v) = if n == m {
                let qkv = Tensor::randn(0f32, 1.0, (b, n, 3 * w), dev)?;
                (
                    qkv.narrow(2, 0, w)?,
                    qkv.narrow(2, w, w)?,
                    qkv.narrow(2, 2 * w, w)?,
                )
            } else {
                let kv = Tensor::randn(0f32, 1.0, (b, m, 2 * w), dev)?;
                let q = Tensor::randn(0f32, 1.0, (b, n, w), dev)?;
                (q, kv.narrow(2, 0, w)?, kv.narrow(2, w, w)?)
            };
            let heads =
                |t: &Tensor, len: usize| t.reshape((b, len, h, d))?.transpose(1, 2)?.contiguous();
            let (qh, kh, vh) = (heads(&q, n)?, heads(&k, m)?, heads(&v, m)?);
            let scores = (qh.matmul(&kh.t()?)? * (d as f64).powf(-0.5))?;
            let expected = candle_nn::ops::softmax_last_dim(&scores)?
                .matmul(&vh)?
                .transpose(1, 2)?
                .reshape((b, n, w))?;
            for dtype in [DType::F16, DType::BF16] {
                // Converting keeps the views' strides: q/k/v stay slices of one buffer.
                let f = |t: &Tensor| t.to_dtype(dtype);
                let (qd, kd, vd) = if n == m {
                    let qkv = Tensor::cat(&[&q, &k, &v], 2)?.to_dtype(dtype)?;
                    (
                        qkv.narrow(2, 0, w)?,
                        qkv.narrow(2, w, w)?,
                        qkv.narrow(2, 2 * w, w)?,
                    )
                } else {
                    let kv = Tensor::cat(&[&k, &v], 2)?.to_dtype(dtype)?;
                    (f(&q)?, kv.narrow(2, 0, w)?, kv.narrow(2, w, w)?)
                };
                let actual = flash::attention(&qd, &kd, &vd, h)?;
                checks.push(KernelCheck {
                    kernel: "flash_attention",
                    case: format!("b{b} h{h} n{n} m{m} d{d} {dtype:?}"),
                    relative_max_diff: relative_max_diff(&actual, &expected)?,
                    tolerance: tolerance(dtype, 0.0) * 2.0,
                });
            }
        }
        Ok(checks)
    }
}

#[cfg(all(test, feature = "cuda"))]
mod tests {
    #[test]
    fn fused_kernels_match_their_candle_nn_compositions_on_random_inputs() {
        let dev = candle_core::Device::new_cuda(0).unwrap();
        // Every fused op: these kernels, the convolutions and flash attention.
        let checks = super::verify_kernels(&dev).unwrap();
        assert!(checks.len() >= 100, "{}", checks.len());
        for c in checks {
            assert!(c.passed(), "{c:?}");
        }
    }
}
