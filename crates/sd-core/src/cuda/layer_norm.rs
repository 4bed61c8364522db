//! Launches layer_norm.cu: LayerNorm over the last dimension, one warp per row held in registers.
#![allow(unsafe_code)] // kernel launches are FFI; every launch below states why its arguments are in bounds.

use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernel_name, Map3, WrapErr};
use candle_core::{CudaDevice, Layout, Tensor, WithDType};

use super::contiguous_view;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/layer_norm.ptx"));
const MODULE: &str = "sd_core_layer_norm";

/// Vectors of 16 bytes each lane of the LayerNorm kernel may hold, as instantiated in layer_norm.cu.
const LAYER_NORM_VECTORS: [usize; 10] = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16];

/// The instantiated vectors-per-lane count for rows of `cols` elements of `elem_size` bytes, if the kernel
/// takes them: a whole number of 16-byte vectors, at most 16 per lane (512 of them per row).
fn layer_norm_vectors(cols: usize, elem_size: usize) -> Option<usize> {
    let per_vector = 16 / elem_size;
    if cols == 0 || !cols.is_multiple_of(per_vector) {
        return None;
    }
    let needed = cols.div_ceil(32 * per_vector);
    LAYER_NORM_VECTORS.into_iter().find(|&v| v >= needed)
}

/// Whether rows of `cols` elements of `elem_size` bytes take the kernel (aligned rows assumed).
pub fn takes_layer_norm(cols: usize, elem_size: usize) -> bool {
    layer_norm_vectors(cols, elem_size).is_some()
}

/// LayerNorm over the last dimension with affine weight and bias, for rows the kernel takes (16-byte aligned,
/// a whole number of 16-byte vectors, up to 512 vectors: every SD width); others `None` (the caller falls back).
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Option<Tensor>> {
    let x = x.contiguous()?;
    let weight = weight.to_dtype(x.dtype())?.contiguous()?;
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    let elem = x.dtype().size_in_bytes();
    let cols = x.dims().last().copied().unwrap_or(0);
    let aligned = [&x, &weight, &bias]
        .iter()
        .all(|t| (t.layout().start_offset() * elem).is_multiple_of(16));
    if !aligned || layer_norm_vectors(cols, elem).is_none() {
        return Ok(None);
    }
    x.apply_op3_no_bwd(&weight, &bias, &FusedLayerNorm { eps: eps as f32 })
        .map(Some)
}

struct FusedLayerNorm {
    eps: f32,
}

impl Map3 for FusedLayerNorm {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        x: &CudaSlice<T>,
        x_l: &Layout,
        w: &CudaSlice<T>,
        w_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        let x = contiguous_view(x, x_l, "layer_norm input")?;
        let w = contiguous_view(w, w_l, "layer_norm weight")?;
        let b = contiguous_view(b, b_l, "layer_norm bias")?;
        let cols = x_l.dims().last().copied().unwrap_or(1).max(1);
        if w_l.shape().elem_count() != cols || b_l.shape().elem_count() != cols {
            candle_core::bail!("layer_norm: weight/bias must have {cols} elements");
        }
        let rows = x_l.shape().elem_count() / cols;
        if rows > u32::MAX as usize {
            candle_core::bail!("layer_norm: {rows} rows are too many for the fused kernel");
        }
        let elem = std::mem::size_of::<T>();
        let aligned = [x_l, w_l, b_l]
            .iter()
            .all(|l| (l.start_offset() * elem).is_multiple_of(16));
        let Some(vectors) = layer_norm_vectors(cols, elem).filter(|_| aligned) else {
            candle_core::bail!(
                "layer_norm: rows of {cols} unaligned or too wide for the fused kernel"
            );
        };
        let kernel = format!("layer_norm_vec{vectors}");
        // SAFETY: every element of every row is written.
        let mut out = unsafe { dev.alloc::<T>(rows * cols)? };
        let name = kernel_name::<T>(&kernel);
        let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
        let mut builder = func.builder();
        let (r, c) = (rows as u32, cols as u32);
        builder.arg(&x);
        builder.arg(&w);
        builder.arg(&b);
        builder.arg(&mut out);
        builder.arg(&r);
        builder.arg(&c);
        builder.arg(&self.eps);
        // Four rows (warps) per block.
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(4).clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel holds 32 lanes x `vectors` x 16 bytes >= a row per warp, so each row fits its warp's
        // registers; warp w of block b touches only row 4b + w (and rows a grid further on).
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(3, FusedLayerNorm, "sd-fused-layer-norm", |l| l
    .shape()
    .clone());
