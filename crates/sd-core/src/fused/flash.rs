//! Launches kernels/flash.cu: attention without materialising the scores, for f16/bf16 heads of up to 160
//! dimensions (every SD 1.x, 2.x and SDXL UNet head; the VAE's single 512-wide head keeps the matmul path).
#![allow(unsafe_code)] // kernel launches are FFI; the launch below states why its arguments are in bounds.

use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernel_name, Map3, WrapErr};
use candle_core::{CudaDevice, DType, Layout, Shape, Tensor, WithDType};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash.ptx"));
const MODULE: &str = "sd_core_flash";
const BM: usize = 64;
const BN: usize = 64;
const WARPS: usize = 4;

thread_local! {
    /// (device, padded width, dtype) whose kernel already allows its dynamic shared memory.
    static SMEM_CONFIGURED: std::cell::RefCell<std::collections::HashSet<(candle_core::cuda_backend::DeviceId, usize, DType)>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// The padded head width the kernel is built for, if any.
fn padded_dim(d: usize) -> Option<usize> {
    if d == 0 || !d.is_multiple_of(8) {
        return None;
    }
    [48, 64, 80, 128, 160].into_iter().find(|&p| d <= p)
}

pub fn supports(dtype: DType, head_dim: usize) -> bool {
    matches!(dtype, DType::F16 | DType::BF16) && padded_dim(head_dim).is_some()
}

/// `q` `[b, h, n, d]`, `k`/`v` `[b, h, m, d]` -> `softmax(q k^T / sqrt(d)) v` as `[b, n, h * d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    q.apply_op3_no_bwd(&k, &v, &FlashAttention)
}

struct FlashAttention;

fn smem_bytes(dp: usize, elem: usize) -> usize {
    let (ldh, lds, ldp, ldo) = (dp + 8, BN + 4, BN + 8, dp + 4);
    (BM * ldh + 2 * BN * ldh) * elem + WARPS * 16 * (lds * 4 + ldp * elem + ldo * 4 + 2 * 4)
}

/// 16-byte loads need every row start aligned: offsets in whole multiples of 8 elements.
fn aligned_view<'a, T: DeviceRepr>(
    s: &'a CudaSlice<T>,
    l: &Layout,
    what: &str,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((start, end)) if start % 8 == 0 => Ok(s.slice(start..end)),
        _ => candle_core::bail!("flash attention: {what} must be contiguous and 16-byte aligned"),
    }
}

impl Map3 for FlashAttention {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        q: &CudaSlice<T>,
        q_l: &Layout,
        k: &CudaSlice<T>,
        k_l: &Layout,
        v: &CudaSlice<T>,
        v_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        let (qv, kv, vv) = (
            aligned_view(q, q_l, "q")?,
            aligned_view(k, k_l, "k")?,
            aligned_view(v, v_l, "v")?,
        );
        let (&[b, h, n, d], &[kb, kh, m, kd], vd) = (q_l.dims(), k_l.dims(), v_l.dims()) else {
            candle_core::bail!("flash attention: q and k must be [batch, heads, tokens, dim]");
        };
        if (kb, kh, kd) != (b, h, d) || vd != k_l.dims() {
            candle_core::bail!(
                "flash attention: q {:?}, k {:?}, v {vd:?} disagree",
                q_l.dims(),
                k_l.dims()
            );
        }
        let Some(dp) = padded_dim(d) else {
            candle_core::bail!("flash attention: head dim {d} is not supported");
        };
        if n == 0 || m == 0 || b * h > 65535 || n > i32::MAX as usize || m > i32::MAX as usize {
            candle_core::bail!(
                "flash attention: shape {:?} x {:?} out of range",
                q_l.dims(),
                k_l.dims()
            );
        }
        // SAFETY: every output row i < n of every (batch, head) is written, d values each.
        let mut out = unsafe { dev.alloc::<T>(b * n * h * d)? };
        let func = dev.get_or_load_custom_func(
            &kernel_name::<T>(&format!("flash_attn_d{dp}")),
            MODULE,
            PTX,
        )?;
        let smem = smem_bytes(dp, std::mem::size_of::<T>());
        // The shared-memory limit is a property of the loaded function: set once per device and kernel, not
        // on every launch (dozens per UNet step).
        let key = (dev.id(), dp, T::DTYPE);
        if !SMEM_CONFIGURED.with(|done| done.borrow().contains(&key)) {
            func.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
            .w()?;
            SMEM_CONFIGURED.with(|done| done.borrow_mut().insert(key));
        }
        let scale_log2 = (d as f32).powf(-0.5) * std::f32::consts::LOG2_E;
        let (hh, nn, mm, dd) = (h as i32, n as i32, m as i32, d as i32);
        let mut builder = func.builder();
        builder.arg(&qv);
        builder.arg(&kv);
        builder.arg(&vv);
        builder.arg(&mut out);
        builder.arg(&hh);
        builder.arg(&nn);
        builder.arg(&mm);
        builder.arg(&dd);
        builder.arg(&scale_log2);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(BM) as u32, (b * h) as u32, 1),
            block_dim: ((WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        // SAFETY: block (x, y) reads rows [64x, 64x + 64) of q and all m rows of k/v for (batch, head) y, all
        // bounds-checked against n and m in the kernel; it writes only its own rows of `out`.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(3, FlashAttention, "sd-flash-attention", |l| {
    let dims = l.dims();
    Shape::from((dims[0], dims[2], dims[1] * dims[3]))
});

/// Flash attention against softmax(q k^T / sqrt(d)) v computed in f32 with candle ops, per padded width.
pub fn verify(dev: &candle_core::Device) -> candle_core::Result<Vec<super::KernelCheck>> {
    let mut checks = Vec::new();
    // (batch, heads, n, m, d): self- and cross-attention shapes of SD 1.5 (40/80/160) and SDXL (64), partial tiles.
    let cases = [
        (2, 8, 300, 77, 40),
        (2, 10, 1000, 1000, 64),
        (1, 8, 256, 300, 80),
        (2, 2, 100, 77, 128),
        (2, 8, 64, 77, 160),
    ];
    for (b, h, n, m, d) in cases {
        let q = Tensor::randn(0f32, 1.0, (b, h, n, d), dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, h, m, d), dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, h, m, d), dev)?;
        let scores = (q.matmul(&k.t()?)? * (d as f64).powf(-0.5))?;
        let expected = candle_nn::ops::softmax_last_dim(&scores)?
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, n, h * d))?;
        for dtype in [DType::F16, DType::BF16] {
            let f = |t: &Tensor| t.to_dtype(dtype);
            let actual = attention(&f(&q)?, &f(&k)?, &f(&v)?)?;
            checks.push(super::KernelCheck {
                kernel: "flash_attention",
                case: format!("b{b} h{h} n{n} m{m} d{d} {dtype:?}"),
                relative_max_diff: super::cuda::relative_max_diff(&actual, &expected)?,
                tolerance: super::cuda::tolerance(dtype, 0.0) * 2.0,
            });
        }
    }
    Ok(checks)
}
