//! The CUDA fast paths of the layers in crate::nn: one launcher per op beside its own `.cu` file (compiled to
//! PTX by build.rs), plus cuDNN convolutions, flash attention and the device-level calls of crate::device.
//! Every function here takes CUDA tensors of f32, f16 or bf16 ([`supports`]); the layers decide when to call.
#![allow(unsafe_code)] // shared helpers for the launchers below.

/// `impl CustomOpN` for a CUDA-only op whose work is a candle `MapN` (dtype dispatch over the slices): the
/// name, a CPU half that refuses (the layers of crate::nn send CPU tensors elsewhere), and the CUDA
/// half that maps the slices and reports the output shape `$shape` computed from the first input's layout.
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

mod bias;
#[cfg(feature = "cudnn")]
pub mod cudnn_conv;
pub mod flash;
mod geglu;
mod group_norm;
mod layer_norm;
pub mod memory;
mod softmax;

pub use bias::{
    add_bias_channels, add_bias_channels_owned, add_bias_channels_residual, add_bias_columns,
    add_bias_columns_residual,
};
pub use geglu::{geglu, geglu_bias};
pub use group_norm::group_norm;
pub use layer_norm::{layer_norm, takes_layer_norm};
pub use softmax::{softmax_last_dim, softmax_last_dim_in_place};

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig};
use candle_core::{DType, Layout};

const THREADS: u32 = 256;
/// Rows per grid in y; larger row counts loop (CUDA caps grid.y at 65535).
const MAX_GRID_Y: usize = 65535;

/// The element types the fused kernels are instantiated for.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

fn contiguous_view<'a, T: DeviceRepr>(
    slice: &'a CudaSlice<T>,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

fn grid_for(rows: usize, per_row: usize) -> LaunchConfig {
    let x_blocks = per_row.div_ceil(THREADS as usize).clamp(1, 1024);
    LaunchConfig {
        grid_dim: (x_blocks as u32, rows.clamp(1, MAX_GRID_Y) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}
