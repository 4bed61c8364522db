//! Launches group_norm.cu: GroupNorm(+SiLU) as a statistics pass, a combination pass and a normalisation pass.
#![allow(unsafe_code)] // kernel launches are FFI; every launch below states why its arguments are in bounds.

use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernel_name, Map3, WrapErr};
use candle_core::{CudaDevice, Layout, Tensor, WithDType};

use super::{contiguous_view, grid_for, THREADS};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/group_norm.ptx"));
const MODULE: &str = "sd_core_group_norm";
/// Elements one statistics block reduces: small enough for hundreds of blocks, large enough to amortise them.
const STATS_CHUNK: usize = 8192;

pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
    silu: bool,
) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 3 || !dims[1].is_multiple_of(groups) {
        candle_core::bail!("group_norm: input {dims:?} does not split into {groups} groups");
    }
    let x = x.contiguous()?;
    let weight = weight.to_dtype(x.dtype())?.contiguous()?;
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    x.apply_op3_no_bwd(
        &weight,
        &bias,
        &FusedGroupNorm {
            groups,
            eps: eps as f32,
            silu,
        },
    )
}

struct FusedGroupNorm {
    groups: usize,
    eps: f32,
    silu: bool,
}

impl Map3 for FusedGroupNorm {
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
        let x = contiguous_view(x, x_l, "group_norm input")?;
        let w = contiguous_view(w, w_l, "group_norm weight")?;
        let b = contiguous_view(b, b_l, "group_norm bias")?;
        let dims = x_l.dims();
        let (batch, channels) = (dims[0], dims[1]);
        let spatial: usize = dims[2..].iter().product();
        if w_l.shape().elem_count() != channels || b_l.shape().elem_count() != channels {
            candle_core::bail!("group_norm: weight/bias must have {channels} elements");
        }
        let groups_total = batch * self.groups;
        let per_group = channels / self.groups * spatial;
        let chunks = per_group.div_ceil(STATS_CHUNK).max(1);
        let elems = batch * channels * spatial;
        if spatial > u32::MAX as usize || channels * batch > u32::MAX as usize {
            candle_core::bail!("group_norm: tensor {dims:?} is too large for the fused kernel");
        }
        // SAFETY: every element of `stats` is written by the statistics pass before it is read.
        let mut stats = unsafe { dev.alloc::<f32>(groups_total * chunks * 2)? };
        // SAFETY: the apply pass writes every element of `out`.
        let mut out = unsafe { dev.alloc::<T>(elems)? };

        let func =
            dev.get_or_load_custom_func(&kernel_name::<T>("group_norm_stats"), MODULE, PTX)?;
        let mut builder = func.builder();
        let (n, chunk) = (per_group as u64, STATS_CHUNK as u32);
        builder.arg(&x);
        builder.arg(&mut stats);
        builder.arg(&n);
        builder.arg(&chunk);
        let cfg = LaunchConfig {
            grid_dim: (chunks as u32, groups_total as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: grid (chunks, groups) covers exactly groups_total * per_group elements of `x`, and each
        // block writes its own two floats of `stats`.
        unsafe { builder.launch(cfg) }.w()?;

        let func = dev.get_or_load_custom_func("group_norm_combine", MODULE, PTX)?;
        let mut builder = func.builder();
        let (gt, ch) = (groups_total as u32, chunks as u32);
        builder.arg(&mut stats);
        builder.arg(&gt);
        builder.arg(&ch);
        builder.arg(&n);
        builder.arg(&chunk);
        builder.arg(&self.eps);
        let cfg = LaunchConfig {
            grid_dim: (groups_total.div_ceil(THREADS as usize) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: one thread per group, bounds-checked in the kernel.
        unsafe { builder.launch(cfg) }.w()?;

        let func =
            dev.get_or_load_custom_func(&kernel_name::<T>("group_norm_apply"), MODULE, PTX)?;
        let mut builder = func.builder();
        let rows = (batch * channels) as u32;
        let (sp, chn, grp) = (spatial as u32, channels as u32, self.groups as u32);
        let silu = i32::from(self.silu);
        builder.arg(&x);
        builder.arg(&stats);
        builder.arg(&w);
        builder.arg(&b);
        builder.arg(&mut out);
        builder.arg(&rows);
        builder.arg(&sp);
        builder.arg(&chn);
        builder.arg(&grp);
        builder.arg(&ch);
        builder.arg(&silu);
        // SAFETY: rows * spatial == elems for both `x` and `out`; channel indices stay below `channels`.
        unsafe { builder.launch(grid_for(batch * channels, spatial)) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(3, FusedGroupNorm, "sd-fused-group-norm", |l| l
    .shape()
    .clone());
