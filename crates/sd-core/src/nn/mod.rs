//! The layers the models are built from (Linear, Conv2d, GroupNorm, LayerNorm, scaled-dot-product attention)
//! and the few functional ops between them, one file each. Every layer keeps candle-nn's composition as its
//! plain path (CPU results, and the goldens, come from it) and takes a fused fast path where one exists.
//!
//! Three things plug in here:
//! - **Per-device dispatch.** Each forward starts with `match Path::of(x)`: [`Path::Cuda`] runs the fused
//!   kernels of crate::cuda; [`Path::Cpu`] is where CPU kernels (crate::cpu) go; everything else
//!   (Metal, unsupported dtypes) takes candle-nn's ops.
//! - **Options.** What used to be process-wide switches (flash attention on or off, cuDNN's scratch limit)
//!   is a [`KernelOptions`] value given to the layers that use it when the model is built.
//! - **Low-rank deltas (LoRA).** [`Linear::weight`] and [`Conv2d::weight`] share storage with the layer:
//!   crate::adapters merges a job's LoRAs into them in place and restores the saved originals bit for bit
//!   afterwards. A [`Linear`] can also carry an unmerged [`LowRank`] delta, added at forward time
//!   ([`Linear::with_delta`]), for adapters that should not touch the base weights.

mod attention;
mod conv2d;
mod group_norm;
mod layer_norm;
mod linear;
mod ops;

pub use attention::{attend_split, split_heads, ScaledDotProduct};
pub use conv2d::{conv2d, Conv2d};
pub use group_norm::{group_norm, GroupNorm};
pub use layer_norm::{layer_norm, LayerNorm};
pub use linear::{linear, linear_no_bias, Linear, LowRank};
pub use ops::{add_per_channel, geglu, softmax_last_dim, softmax_last_dim_owned};

use candle_core::{Device, Tensor};

/// How the layers may compute, fixed when a model is built (CLI: `--flash-attention`,
/// `--conv-workspace-limit-mib`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// Whether attention may use the fused flash kernel where it applies (CUDA, f16/bf16, head dim <= 160, no
    /// f32 upcast), like PyTorch's `torch.backends.cuda.enable_flash_sdp`.
    pub flash_attention: bool,
    /// The most scratch memory one cuDNN convolution may take, bytes. Where cuDNN's first choice wants more,
    /// an implicit-GEMM algorithm (little or no scratch, slower) runs instead.
    pub conv_workspace_limit: usize,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            flash_attention: true,
            conv_workspace_limit: usize::MAX,
        }
    }
}

/// Which implementation a layer's forward takes for an input: the one decision point per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A CUDA tensor of a type the fused kernels take (f32, f16, bf16).
    #[cfg(feature = "cuda")]
    Cuda,
    /// A CPU tensor: candle's ops today; CPU kernels (crate::cpu) plug in here.
    Cpu,
    /// Anything else (Metal, other dtypes): candle's ops.
    Other,
}

impl Path {
    pub fn of(x: &Tensor) -> Self {
        match x.device() {
            #[cfg(feature = "cuda")]
            Device::Cuda(_) if crate::cuda::supports(x.dtype()) => Self::Cuda,
            Device::Cpu => Self::Cpu,
            _ => Self::Other,
        }
    }
}
