//! Launches softmax.cu: softmax over the last dimension, to a new tensor or over the input itself.
#![allow(unsafe_code)] // kernel launches are FFI; every launch below states why its arguments are in bounds.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernel_name, Map1, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Tensor, WithDType};

use super::{contiguous_view, supports};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/softmax.ptx"));
const MODULE: &str = "sd_core_softmax";

pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&FusedSoftmax)
}

/// Rows up to this long are held in registers by the in-place kernel (256 threads x 32 items).
const INPLACE_SOFTMAX_MAX_COLS: usize = 256 * 32;

/// Softmax over the last dimension written over `x` itself, for a tensor nothing else refers to (attention
/// scores straight out of their matmul): half the memory of a separate output, and one pass over it.
pub fn softmax_last_dim_in_place(x: Tensor) -> candle_core::Result<Tensor> {
    let cols = x.dims().last().copied().unwrap_or(1);
    if !x.is_contiguous() || cols > INPLACE_SOFTMAX_MAX_COLS || !supports(x.dtype()) {
        return softmax_last_dim(&x);
    }
    x.inplace_op1(&InPlaceSoftmax)?;
    Ok(x)
}

struct InPlaceSoftmax;

impl InPlaceSoftmax {
    fn run<T: DeviceRepr + WithDType>(
        x: &mut CudaSlice<T>,
        l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<()> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("in-place softmax: input must be contiguous");
        };
        let cols = l.dims().last().copied().unwrap_or(1).max(1);
        let rows = (end - start) / cols;
        let items = cols.div_ceil(256);
        let (variant, threads) = match items {
            0 | 1 => (1, cols.next_power_of_two().clamp(32, 256)),
            2..=4 => (4, 256),
            5..=16 => (16, 256),
            _ => (32, 256),
        };
        let mut view = x.slice_mut(start..end);
        let name = kernel_name::<T>(&format!("softmax_inplace_{variant}"));
        let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
        let mut builder = func.builder();
        let (r, c) = (rows as u32, cols as u32);
        builder.arg(&mut view);
        builder.arg(&r);
        builder.arg(&c);
        let cfg = LaunchConfig {
            grid_dim: (rows.clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (threads as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: threads * variant >= cols, so each row fits the registers; block r touches only row r
        // (and rows r + k * grid).
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }
}

impl candle_core::InplaceOp1 for InPlaceSoftmax {
    fn name(&self) -> &'static str {
        "sd-fused-softmax-in-place"
    }

    fn cpu_fwd(&self, _: &mut candle_core::CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("the in-place softmax runs on CUDA tensors only")
    }

    fn cuda_fwd(&self, x: &mut CudaStorage, l: &Layout) -> candle_core::Result<()> {
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let dev = x.device().clone();
        match &mut x.slice {
            S::F32(s) => Self::run(s, l, &dev),
            S::F16(s) => Self::run(s, l, &dev),
            S::BF16(s) => Self::run(s, l, &dev),
            _ => candle_core::bail!("in-place softmax: f32, f16 or bf16 only"),
        }
    }
}

struct FusedSoftmax;

impl Map1 for FusedSoftmax {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        x: &CudaSlice<T>,
        dev: &CudaDevice,
        l: &Layout,
    ) -> candle_core::Result<CudaSlice<T>> {
        let x = contiguous_view(x, l, "softmax input")?;
        let cols = l.dims().last().copied().unwrap_or(1).max(1);
        let rows = l.shape().elem_count() / cols;
        if rows > u32::MAX as usize || cols > u32::MAX as usize {
            candle_core::bail!(
                "softmax: tensor {:?} is too large for the fused kernel",
                l.dims()
            );
        }
        // SAFETY: every element of every row is written.
        let mut out = unsafe { dev.alloc::<T>(rows * cols)? };
        let func = dev.get_or_load_custom_func(&kernel_name::<T>("softmax"), MODULE, PTX)?;
        let mut builder = func.builder();
        let (r, c) = (rows as u32, cols as u32);
        builder.arg(&x);
        builder.arg(&mut out);
        builder.arg(&r);
        builder.arg(&c);
        // Short rows (cross-attention over 77 tokens) get one warp; long ones 256 threads.
        let threads = (cols.div_ceil(8).next_power_of_two()).clamp(32, 256) as u32;
        let cfg = LaunchConfig {
            grid_dim: (rows.clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: block r reads and writes row r (and rows r + k * grid) of `cols` elements.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(1, FusedSoftmax, "sd-fused-softmax", |l| l.shape().clone());
