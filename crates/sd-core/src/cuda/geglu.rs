//! Launches geglu.cu: diffusers' GEGLU gate, optionally with the projection's bias folded in.
#![allow(unsafe_code)] // kernel launches are FFI; every launch below states why its arguments are in bounds.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
use candle_core::cuda_backend::{kernel_name, Map1, Map2, WrapErr};
use candle_core::{CudaDevice, Layout, Shape, Tensor, WithDType};

use super::{contiguous_view, grid_for};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/geglu.ptx"));
const MODULE: &str = "sd_core_geglu";

pub fn geglu(h: &Tensor) -> candle_core::Result<Tensor> {
    h.contiguous()?.apply_op1_no_bwd(&FusedGeglu)
}

/// `geglu(h + bias)` in one pass, `bias` `[2 * inner]`.
pub fn geglu_bias(h: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(h.dtype())?.contiguous()?;
    h.contiguous()?.apply_op2_no_bwd(&bias, &FusedGegluBias)
}

struct FusedGegluBias;

impl Map2 for FusedGegluBias {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        h: &CudaSlice<T>,
        h_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        let b = contiguous_view(b, b_l, "geglu bias")?;
        if Some(&b_l.shape().elem_count()) != h_l.dims().last() {
            candle_core::bail!(
                "geglu: the bias must match the last dimension of {:?}",
                h_l.dims()
            );
        }
        launch_geglu(h, h_l, Some(&b), dev)
    }
}

/// `out[r, j] = a * gelu(g)` with `a, g = h[r, j] (+ bias[j]), h[r, inner + j] (+ bias[inner + j])`: the
/// `geglu` kernel, or `geglu_bias` when the projection's bias is folded in.
fn launch_geglu<T: DeviceRepr + WithDType>(
    h: &CudaSlice<T>,
    h_l: &Layout,
    bias: Option<&candle_core::cuda_backend::cudarc::driver::CudaView<'_, T>>,
    dev: &CudaDevice,
) -> candle_core::Result<CudaSlice<T>> {
    let h = contiguous_view(h, h_l, "geglu input")?;
    let dims = h_l.dims();
    let last = dims.last().copied().unwrap_or(0);
    if last % 2 != 0 {
        candle_core::bail!("geglu: last dimension {last} is odd");
    }
    let inner = last / 2;
    let rows = h_l.shape().elem_count() / last.max(1);
    if rows > u32::MAX as usize || inner > u32::MAX as usize {
        candle_core::bail!("geglu: tensor {dims:?} is too large for the fused kernel");
    }
    // SAFETY: the kernel writes every one of rows * inner outputs.
    let mut out = unsafe { dev.alloc::<T>(rows * inner)? };
    let name = if bias.is_some() {
        "geglu_bias"
    } else {
        "geglu"
    };
    let func = dev.get_or_load_custom_func(&kernel_name::<T>(name), MODULE, PTX)?;
    let mut builder = func.builder();
    let (r, i) = (rows as u32, inner as u32);
    builder.arg(&h);
    if let Some(b) = bias {
        builder.arg(b);
    }
    builder.arg(&mut out);
    builder.arg(&r);
    builder.arg(&i);
    // SAFETY: row r reads h[r * 2 * inner ..][..2 * inner] (and the 2 * inner bias values), writes
    // out[r * inner ..][..inner].
    unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
    Ok(out)
}

cuda_only_op!(2, FusedGegluBias, "sd-fused-geglu-bias", |l| {
    let mut dims = l.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last /= 2;
    }
    Shape::from(dims)
});

struct FusedGeglu;

impl Map1 for FusedGeglu {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        h: &CudaSlice<T>,
        dev: &CudaDevice,
        h_l: &Layout,
    ) -> candle_core::Result<CudaSlice<T>> {
        launch_geglu(h, h_l, None, dev)
    }
}

cuda_only_op!(1, FusedGeglu, "sd-fused-geglu", |l| {
    let mut dims = l.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last /= 2;
    }
    Shape::from(dims)
});
