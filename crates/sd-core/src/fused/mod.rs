//! Fused GPU kernels for the hot spots of the UNet and VAE, behind plain functions that fall back to the
//! equivalent candle-nn composition on other devices (so CPU results, and the goldens, are unchanged).
//!
//! - [`GroupNorm`]: GroupNorm, optionally followed by SiLU, as one statistics pass and one normalisation pass.
//! - [`geglu`]: the GEGLU gate of the transformer feed-forward.
//! - [`Conv2d`]: with the `cudnn` feature, convolutions through cuDNN configured as PyTorch configures it.

/// `impl CustomOpN` for a CUDA-only op whose work is a candle `MapN` (dtype dispatch over the slices): the
/// name, a CPU half that refuses (the functions of this module send CPU tensors to candle first), and the CUDA
/// half that maps the slices and reports the output shape `$shape` computed from the first input's layout.
#[cfg(feature = "cuda")]
macro_rules! cuda_only_op {
    (1, $ty:ty, $name:literal, |$l:ident| $shape:expr) => {
        impl candle_core::CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                candle_core::bail!(concat!($name, " runs on CUDA tensors only"))
            }
            fn cuda_fwd(
                &self,
                a: &candle_core::CudaStorage,
                $l: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                use candle_core::backend::BackendStorage;
                let device = a.device().clone();
                let slice = self.map(&a.slice, &device, $l)?;
                Ok((candle_core::CudaStorage { slice, device }, $shape))
            }
        }
    };
    (2, $ty:ty, $name:literal, |$l:ident| $shape:expr) => {
        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                candle_core::bail!(concat!($name, " runs on CUDA tensors only"))
            }
            fn cuda_fwd(
                &self,
                a: &candle_core::CudaStorage,
                $l: &candle_core::Layout,
                b: &candle_core::CudaStorage,
                b_l: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                use candle_core::backend::BackendStorage;
                let device = a.device().clone();
                let slice = self.map(&a.slice, $l, &b.slice, b_l, &device)?;
                Ok((candle_core::CudaStorage { slice, device }, $shape))
            }
        }
    };
    (3, $ty:ty, $name:literal, |$l:ident| $shape:expr) => {
        impl candle_core::CustomOp3 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                candle_core::bail!(concat!($name, " runs on CUDA tensors only"))
            }
            fn cuda_fwd(
                &self,
                a: &candle_core::CudaStorage,
                $l: &candle_core::Layout,
                b: &candle_core::CudaStorage,
                b_l: &candle_core::Layout,
                c: &candle_core::CudaStorage,
                c_l: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
                use candle_core::backend::BackendStorage;
                let device = a.device().clone();
                let slice = self.map(&a.slice, $l, &b.slice, b_l, &c.slice, c_l, &device)?;
                Ok((candle_core::CudaStorage { slice, device }, $shape))
            }
        }
    };
}

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cudnn")]
mod cudnn_conv;
#[cfg(feature = "cuda")]
mod flash;

use candle_core::{Module, Tensor, D};
use candle_nn::Conv2dConfig;

/// Prepares a new device for the model thread (CUDA: allocator and event settings; others: nothing).
pub fn configure_device(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return cuda::configure_device(dev);
    }
    let _ = device;
    Ok(())
}

/// Runs `f` as the profiled region of a CUDA profiler started with `--profile-from-start off` (ncu, nsys);
/// elsewhere just runs it.
pub fn profiled<T>(
    device: &candle_core::Device,
    f: impl FnOnce() -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return cuda::profiled(dev, f);
    }
    let _ = device;
    f()
}

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
        let mut checks = cuda::verify(device)?;
        checks.extend(verify_convolutions(device)?);
        checks.extend(flash::verify(device)?);
        return Ok(checks);
    }
    let _ = device;
    Ok(Vec::new())
}

/// [`Conv2d`]'s CUDA path (cuDNN or 1x1-as-matmul, fused bias) against candle's own convolution.
#[cfg(feature = "cuda")]
fn verify_convolutions(device: &candle_core::Device) -> candle_core::Result<Vec<KernelCheck>> {
    use candle_core::DType;
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
            let layer = Conv2d {
                plain: candle_nn::Conv2d::new(wd.clone(), Some(bd), cfg),
            };
            let expected = layer.plain.forward(&xd)?;
            let actual = layer.forward(&xd)?;
            if actual.dims() != expected.dims() {
                candle_core::bail!("conv2d: shape {:?} vs {:?}", actual.dims(), expected.dims());
            }
            checks.push(KernelCheck {
                kernel: if cfg!(feature = "cudnn") && k > 1 {
                    "conv2d (cuDNN)"
                } else {
                    "conv2d"
                },
                case: format!("{cin}->{cout} k{k} p{padding} s{stride} {side}x{side} {dtype:?}"),
                relative_max_diff: cuda::relative_max_diff(&actual, &expected)?,
                // TF32 (cuDNN's default for f32, as PyTorch's) rounds inputs to 10 mantissa bits.
                tolerance: cuda::tolerance(dtype, 2e-3),
            });
            // The residual joins in the same in-place pass as the bias.
            let residual = expected.ones_like()?.affine(0.5, 0.0)?;
            let expected = (&expected + &residual)?;
            checks.push(KernelCheck {
                kernel: "conv2d + residual",
                case: format!("{cin}->{cout} k{k} p{padding} s{stride} {side}x{side} {dtype:?}"),
                relative_max_diff: cuda::relative_max_diff(
                    &layer.forward_residual(&xd, &residual)?,
                    &expected,
                )?,
                tolerance: cuda::tolerance(dtype, 2e-3),
            });
        }
    }
    Ok(checks)
}

/// GroupNorm with affine weight and bias (diffusers' `nn.GroupNorm`), with an optional fused SiLU.
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
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && cuda::supports(x.dtype()) {
            return cuda::group_norm(x, &self.weight, &self.bias, self.groups, self.eps, silu);
        }
        if crate::cpu::applies(x) {
            let (w, b) = (&self.weight, &self.bias);
            return crate::cpu::groupnorm::group_norm(x, w, b, self.groups, self.eps, silu);
        }
        let y = self.plain.forward(x)?;
        if silu {
            candle_nn::ops::silu(&y)
        } else {
            Ok(y)
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

/// A 2-D convolution layer (`weight`, optional `bias`) like candle-nn's; on CUDA 1x1 kernels become matrix
/// products, others go to cuDNN in `cudnn` builds, and the bias add is fused.
#[derive(Clone, Debug)]
pub struct Conv2d {
    plain: candle_nn::Conv2d,
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && cuda::supports(x.dtype()) && self.plain.config().groups == 1 {
            let y = self.convolve_cuda(x)?;
            return match self.plain.bias() {
                Some(b) => cuda::add_bias_channels_owned(y, b, None),
                None => Ok(y),
            };
        }
        if let Some(params) = self.cpu_params(x) {
            let (w, b) = (self.plain.weight(), self.plain.bias());
            return crate::cpu::conv::conv2d(x, w, b, None, params);
        }
        self.plain.forward(x)
    }
}

impl Conv2d {
    /// `conv(x) + residual`, on CUDA with the bias and the residual added in one pass.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && cuda::supports(x.dtype()) && self.plain.config().groups == 1 {
            if let Some(b) = self.plain.bias() {
                return cuda::add_bias_channels_owned(self.convolve_cuda(x)?, b, Some(residual));
            }
        }
        if let Some(params) = self.cpu_params(x) {
            let (w, b) = (self.plain.weight(), self.plain.bias());
            return crate::cpu::conv::conv2d(x, w, b, Some(residual), params);
        }
        self.forward(x)? + residual
    }

    /// The CPU kernel's parameters where it applies (f32 on the CPU, one group, no dilation).
    fn cpu_params(&self, x: &Tensor) -> Option<crate::cpu::conv::ConvParams> {
        let cfg = self.plain.config();
        (crate::cpu::applies(x) && cfg.groups == 1 && cfg.dilation == 1).then_some(
            crate::cpu::conv::ConvParams {
                padding: cfg.padding,
                stride: cfg.stride,
            },
        )
    }
}

#[cfg(feature = "cuda")]
impl Conv2d {
    /// The convolution without bias: a 1x1 kernel is one batched matrix product over NCHW as it lies (no
    /// layout change, no im2col); others go to cuDNN in `cudnn` builds and to candle otherwise.
    fn convolve_cuda(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = self.plain.config();
        let w = self.plain.weight();
        let (cout, cin, kh, kw) = w.dims4()?;
        let (n, _, h, wd) = x.dims4()?;
        if (kh, kw) == (1, 1) && cfg.padding == 0 && cfg.stride == 1 {
            let w = w.reshape((cout, cin))?.broadcast_left(n)?;
            let y = w.matmul(&x.contiguous()?.reshape((n, cin, h * wd))?)?;
            return y.reshape((n, cout, h, wd));
        }
        #[cfg(feature = "cudnn")]
        {
            let params = cudnn_conv::ConvParams {
                padding: cfg.padding,
                stride: cfg.stride,
                dilation: cfg.dilation,
            };
            cudnn_conv::conv2d(x, w, params)
        }
        #[cfg(not(feature = "cudnn"))]
        x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, 1)
    }
}

/// LayerNorm with affine weight and bias (eps as given), one fused kernel on CUDA for rows up to 2048 wide.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    plain: candle_nn::LayerNorm,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    eps: f64,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && cuda::supports(x.dtype()) {
            if let Some(b) = self.plain.bias() {
                if let Some(y) = cuda::layer_norm(x, self.plain.weight(), b, self.eps)? {
                    return Ok(y);
                }
            }
        }
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

/// A linear layer like candle-nn's whose bias add is one fused kernel on CUDA (candle's broadcast add runs
/// at a fifth of memory bandwidth on the UNet's activations).
#[derive(Clone, Debug)]
pub struct Linear {
    plain: candle_nn::Linear,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            plain: candle_nn::Linear::new(weight, bias),
        }
    }

    /// The `[out, in]` weight (shared storage: LoRAs are merged into it in place).
    pub fn weight(&self) -> &Tensor {
        self.plain.weight()
    }
}

impl Linear {
    /// `x W^T` without the bias.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.plain.weight();
        let w = match *x.dims() {
            [b1, b2, _, _] => w.broadcast_left((b1, b2))?.t()?,
            [b, _, _] => w.broadcast_left(b)?.t()?,
            _ => w.t()?,
        };
        x.matmul(&w)
    }
}

impl Linear {
    /// `layer(x) + residual`, on CUDA with the bias and the residual added in one pass.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && cuda::supports(x.dtype()) {
            if let Some(b) = self.plain.bias() {
                return cuda::add_bias_columns_residual(&self.matmul(x)?, b, residual);
            }
        }
        if crate::cpu::applies(x) {
            let (w, b) = (self.plain.weight(), self.plain.bias());
            return crate::cpu::linear::linear(x, w, b, Some(residual));
        }
        self.forward(x)? + residual
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() && cuda::supports(x.dtype()) {
            let y = self.matmul(x)?;
            return match self.plain.bias() {
                Some(b) => cuda::add_bias_columns(&y, b),
                None => Ok(y),
            };
        }
        if crate::cpu::applies(x) {
            let (w, b) = (self.plain.weight(), self.plain.bias());
            return crate::cpu::linear::linear(x, w, b, None);
        }
        self.plain.forward(x)
    }
}

/// Reads `weight` `[out, in]` and `bias` `[out]`, as `candle_nn::linear`.
pub fn linear(
    in_dim: usize,
    out_dim: usize,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<Linear> {
    Ok(Linear {
        plain: candle_nn::linear(in_dim, out_dim, vb)?,
    })
}

/// Reads `weight` `[out, in]` only.
pub fn linear_no_bias(
    in_dim: usize,
    out_dim: usize,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<Linear> {
    Ok(Linear {
        plain: candle_nn::linear_no_bias(in_dim, out_dim, vb)?,
    })
}

/// `softmax` over the last dimension (one fused kernel on CUDA).
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && cuda::supports(x.dtype()) {
        return cuda::softmax_last_dim(x);
    }
    candle_nn::ops::softmax_last_dim(x)
}

static FLASH_ATTENTION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether attention may use the fused flash kernel where it applies (CUDA, f16/bf16, head dim <= 160, no
/// f32 upcast). A process-wide backend switch, like PyTorch's `torch.backends.cuda.enable_flash_sdp`.
pub fn set_flash_attention(enabled: bool) {
    FLASH_ATTENTION.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

static CONV_WORKSPACE_LIMIT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);

/// The most scratch memory one cuDNN convolution may take (bytes; process-wide). Where cuDNN's first choice
/// wants more, an implicit-GEMM algorithm (little or no scratch, slower) runs instead. Applies to plans made
/// after the call.
pub fn set_conv_workspace_limit(bytes: usize) {
    CONV_WORKSPACE_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

#[cfg_attr(not(feature = "cudnn"), allow(dead_code))]
fn conv_workspace_limit() -> usize {
    CONV_WORKSPACE_LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// `softmax(q k^T / sqrt(d)) v` per head by the flash kernel, for `q` `[b, n, heads * d]` and `k`/`v`
/// `[b, m, heads * d]` (views with any row stride, such as slices of a fused projection, are read in place),
/// giving `[b, n, heads * d]`; `None` where it does not apply (then the caller takes the matmul path).
pub fn flash_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
) -> candle_core::Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if FLASH_ATTENTION.load(std::sync::atomic::Ordering::Relaxed)
        && q.device().is_cuda()
        && heads > 0
        && q.dim(candle_core::D::Minus1)? % heads == 0
        && flash::supports(q.dtype(), q.dim(candle_core::D::Minus1)? / heads)
        && flash::device_supports(q.device())
    {
        return flash::attention(q, k, v, heads).map(Some);
    }
    if crate::cpu::applies(q) {
        return crate::cpu::attention::attention(q, k, v, heads).map(Some);
    }
    Ok(None)
}

/// [`softmax_last_dim`] reusing `x`'s memory on CUDA (the caller gives up `x`).
pub fn softmax_last_dim_owned(x: Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return cuda::softmax_last_dim_in_place(x);
    }
    candle_nn::ops::softmax_last_dim(&x)
}

/// Reads `weight` `[out, in, k, k]` and `bias` `[out]`, as `candle_nn::conv2d`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    vb: candle_nn::VarBuilder,
) -> candle_core::Result<Conv2d> {
    Ok(Conv2d {
        plain: candle_nn::conv2d(in_channels, out_channels, kernel_size, cfg, vb)?,
    })
}

/// `geglu(layer(x))` with the layer's bias folded into the GEGLU kernel on CUDA.
pub fn linear_geglu(x: &Tensor, layer: &Linear) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && cuda::supports(x.dtype()) {
        let h = layer.matmul(x)?;
        return match layer.plain.bias() {
            Some(b) => cuda::geglu_bias(&h, b),
            None => cuda::geglu(&h),
        };
    }
    geglu(&layer.forward(x)?)
}

/// `x` `[n, c, h, w]` plus a per-image, per-channel `shift` `[n, c]` (the resnets' time embedding).
pub fn add_per_channel(x: &Tensor, shift: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && cuda::supports(x.dtype()) {
        let (n, c, h, w) = x.dims4()?;
        // Rows of [1, n * c, h * w] take shift[row], which is shift[image, channel].
        let rows = x.contiguous()?.reshape((1, n * c, h * w))?;
        return cuda::add_bias_channels(&rows, &shift.reshape(n * c)?)?.reshape((n, c, h, w));
    }
    x.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)
}

/// Where device memory went, for benchmarks (CUDA only).
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryReport {
    /// Most bytes the stream-ordered pool handed out at once (live tensors and workspaces).
    pub pool_used_high_mib: f64,
    /// Most bytes the pool held from the driver (the above plus what it kept for reuse).
    pub pool_reserved_high_mib: f64,
    /// Bytes handed out now.
    pub pool_used_mib: f64,
    /// Device memory in use now, by every process.
    pub device_used_mib: f64,
}

pub fn memory_report(device: &candle_core::Device) -> candle_core::Result<Option<MemoryReport>> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return cuda::memory_report(dev).map(Some);
    }
    let _ = device;
    Ok(None)
}

/// Restarts the high-water marks of [`memory_report`] (CUDA; elsewhere nothing to do).
pub fn reset_memory_high(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return cuda::reset_memory_high(dev);
    }
    let _ = device;
    Ok(())
}

/// Gives the device's unused cached memory back (CUDA; elsewhere nothing to do).
pub fn release_cached_memory(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return cuda::release_cached_memory(dev);
    }
    let _ = device;
    Ok(())
}

/// GEGLU: `h[..., :n] * gelu_erf(h[..., n:])` for `h` of last dimension `2n`.
pub fn geglu(h: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if h.device().is_cuda() && cuda::supports(h.dtype()) {
        return cuda::geglu(h);
    }
    let half = h.dim(D::Minus1)? / 2;
    let value = h.narrow(D::Minus1, 0, half)?;
    let gate = h.narrow(D::Minus1, half, half)?;
    value * gate.gelu_erf()?
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
