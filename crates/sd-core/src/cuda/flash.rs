//! Launches flash.cu: attention without materialising the scores, for f16/bf16 heads of up to 160
//! dimensions (every SD 1.x, 2.x and SDXL UNet head; the VAE's single 512-wide head keeps the matmul path) on
//! GPUs of compute capability 8.0 and later.
#![allow(unsafe_code)] // kernel launches are FFI; the launch below states why its arguments are in bounds.

use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernel_name, Map3, WrapErr};
use candle_core::{CudaDevice, DType, Layout, Shape, Tensor, WithDType};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash.ptx"));
const MODULE: &str = "sd_core_flash";
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

/// Query rows per block: each of the 4 warps takes 32 rows for narrow heads, 16 for wide ones (registers).
fn block_rows(dp: usize) -> usize {
    if dp <= 64 {
        128
    } else {
        64
    }
}

pub fn supports(dtype: DType, head_dim: usize) -> bool {
    matches!(dtype, DType::F16 | DType::BF16) && padded_dim(head_dim).is_some()
}

/// Whether the GPU runs the kernel: its tensor-core and async-copy instructions need compute capability 8.0.
/// Asked once per device (attention runs dozens of times per UNet step).
pub fn device_supports(device: &candle_core::Device) -> bool {
    thread_local! {
        static CAPABLE: std::cell::RefCell<std::collections::HashMap<candle_core::cuda_backend::DeviceId, bool>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    let candle_core::Device::Cuda(dev) = device else {
        return false;
    };
    CAPABLE.with(|known| {
        *known.borrow_mut().entry(dev.id()).or_insert_with(|| {
            dev.cuda_stream()
                .context()
                .compute_capability()
                .is_ok_and(|(major, _)| major >= 8)
        })
    })
}

/// `q` `[b, n, heads * d]`, `k`/`v` `[b, m, heads * d]` -> `softmax(q k^T / sqrt(d)) v` per head, as
/// `[b, n, heads * d]`. The inputs may be views with any row and batch strides (e.g. slices of one fused q/k/v
/// projection); views the kernel cannot read directly are copied first.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    if !device_supports(q.device()) {
        candle_core::bail!("flash attention needs a GPU of compute capability 8.0 or later");
    }
    let readable = |t: &Tensor| -> candle_core::Result<Tensor> {
        if strided_rows(t.layout()).is_some() {
            Ok(t.clone())
        } else {
            t.contiguous()
        }
    };
    let (q, k, v) = (readable(q)?, readable(k)?, readable(v)?);
    q.apply_op3_no_bwd(&k, &v, &FlashAttention { heads })
}

struct FlashAttention {
    heads: usize,
}

fn smem_bytes(dp: usize, elem: usize) -> usize {
    // Two stages of a key tile and a value tile; the query tile is staged in the second stage first.
    4 * BN * (dp + 8) * elem
}

/// (start offset, batch stride, row stride) of a `[b, rows, width]` layout whose rows are contiguous and
/// whose row starts are all 16-byte aligned (multiples of 8 elements), as the kernel's cp.async needs.
fn strided_rows(l: &Layout) -> Option<(usize, usize, usize)> {
    let (&[b, rows, width], &[batch_stride, row_stride, unit]) = (l.dims(), l.stride()) else {
        return None;
    };
    let batch_stride = if b == 1 { 0 } else { batch_stride };
    let row_stride = if rows == 1 { width } else { row_stride };
    let start = l.start_offset();
    let aligned = [start, batch_stride, row_stride, width]
        .iter()
        .all(|x| x.is_multiple_of(8));
    (unit == 1 && aligned && row_stride >= width).then_some((start, batch_stride, row_stride))
}

/// The part of `s` a `[b, rows, width]` layout reads, with its batch and row strides (see [`strided_rows`]).
fn strided_view<'a, T: DeviceRepr>(
    s: &'a CudaSlice<T>,
    l: &Layout,
    what: &str,
) -> candle_core::Result<(CudaView<'a, T>, i64, i64)> {
    let Some((start, batch, row)) = strided_rows(l) else {
        candle_core::bail!("flash attention: {what} rows must be contiguous and 16-byte aligned")
    };
    let (b, rows, width) = l.shape().dims3()?;
    if b == 0 || rows == 0 || start + (b - 1) * batch + (rows - 1) * row + width > s.len() {
        candle_core::bail!("flash attention: {what} layout is empty or reaches past its storage");
    }
    let end = start + (b - 1) * batch + (rows - 1) * row + width;
    Ok((s.slice(start..end), batch as i64, row as i64))
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
        let heads = self.heads;
        let (&[b, n, width], &[kb, m, kw], vd) = (q_l.dims(), k_l.dims(), v_l.dims()) else {
            candle_core::bail!("flash attention: q and k must be [batch, tokens, heads * dim]");
        };
        if (kb, kw) != (b, width) || vd != k_l.dims() {
            candle_core::bail!(
                "flash attention: q {:?}, k {:?}, v {vd:?} disagree",
                q_l.dims(),
                k_l.dims()
            );
        }
        if heads == 0 || !width.is_multiple_of(heads) {
            candle_core::bail!("flash attention: width {width} is not a multiple of {heads} heads");
        }
        let d = width / heads;
        let Some(dp) = padded_dim(d) else {
            candle_core::bail!("flash attention: head dim {d} is not supported");
        };
        if n == 0 || m == 0 || b * heads > 65535 || n > i32::MAX as usize || m > i32::MAX as usize {
            candle_core::bail!(
                "flash attention: shape {:?} x {:?} out of range",
                q_l.dims(),
                k_l.dims()
            );
        }
        let (qv, q_batch, q_row) = strided_view(q, q_l, "q")?;
        let (kv, k_batch, k_row) = strided_view(k, k_l, "k")?;
        let (vv, v_batch, v_row) = strided_view(v, v_l, "v")?;
        // SAFETY: every output row i < n of every (batch, head) is written, d values each.
        let mut out = unsafe { dev.alloc::<T>(b * n * width)? };
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
        let (hh, nn, mm, dd) = (heads as i32, n as i32, m as i32, d as i32);
        let mut builder = func.builder();
        builder.arg(&qv);
        builder.arg(&kv);
        builder.arg(&vv);
        builder.arg(&mut out);
        builder.arg(&hh);
        builder.arg(&nn);
        builder.arg(&mm);
        builder.arg(&dd);
        builder.arg(&q_batch);
        builder.arg(&q_row);
        builder.arg(&k_batch);
        builder.arg(&k_row);
        builder.arg(&v_batch);
        builder.arg(&v_row);
        builder.arg(&scale_log2);
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(block_rows(dp)) as u32, (b * heads) as u32, 1),
            block_dim: ((WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        // SAFETY: block (x, y) reads its query rows and all m key/value rows of (batch, head) y through the
        // strides checked against the views' lengths above, masking rows >= n / m and columns >= d in the
        // kernel; it writes only its own rows of `out`.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(3, FlashAttention, "sd-flash-attention", |l| Shape::from(
    l.dims()
));
