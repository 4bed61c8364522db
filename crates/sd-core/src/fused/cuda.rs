//! Launches kernels/fused.cu (PTX built by build.rs) on candle's CUDA stream.
#![allow(unsafe_code)] // kernel launches are FFI; every launch below states why its arguments are in bounds.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{kernel_name, Map1, Map2, Map3, WrapErr};
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Shape, Tensor, WithDType};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));
const MODULE: &str = "sd_core_fused";
const THREADS: u32 = 256;
/// Elements one statistics block reduces: small enough for hundreds of blocks, large enough to amortise them.
const STATS_CHUNK: usize = 8192;
/// Rows per grid in y; larger row counts loop (CUDA caps grid.y at 65535).
const MAX_GRID_Y: usize = 65535;

/// Sets a fresh CUDA device up for one model thread: no per-allocation event tracking (everything runs on
/// candle's one stream, so the events only cost two driver calls per tensor) and a memory pool that keeps
/// freed memory for reuse, as PyTorch's caching allocator does, instead of returning it at every synchronise.
pub fn configure_device(dev: &CudaDevice) -> candle_core::Result<()> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    // SAFETY: called before any tensor exists on this device, and the model thread uses only candle's stream.
    unsafe { dev.disable_event_tracking() };
    let stream = dev.cuda_stream();
    let mut pool = std::mem::MaybeUninit::<sys::CUmemoryPool>::uninit();
    let mut keep = u64::MAX;
    // SAFETY: `pool` is written by the driver before use; the attribute takes a u64.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(pool.as_mut_ptr(), stream.context().cu_device())
            .result()
            .w()?;
        result::mem_pool::set_attribute(
            pool.assume_init(),
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut keep as *mut u64).cast(),
        )
        .w()?;
    }
    Ok(())
}

/// Brackets `f` with cuProfilerStart/Stop, so `ncu --profile-from-start off` sees only its kernels; without
/// a profiler attached both calls do nothing.
pub fn profiled<T>(
    dev: &CudaDevice,
    f: impl FnOnce() -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    dev.cuda_stream().synchronize().w()?;
    // SAFETY: no arguments; the context is current on this thread through candle's stream.
    unsafe { sys::cuProfilerStart() }.result().w()?;
    let out = f();
    dev.cuda_stream().synchronize().w()?;
    // SAFETY: as above.
    unsafe { sys::cuProfilerStop() }.result().w()?;
    out
}

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

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

/// The device's default stream-ordered pool (where candle's allocations come from), after synchronising.
fn default_pool(
    dev: &CudaDevice,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::sys::CUmemoryPool> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let stream = dev.cuda_stream();
    stream.synchronize().w()?;
    let mut pool = std::mem::MaybeUninit::<sys::CUmemoryPool>::uninit();
    // SAFETY: `pool` is written by the driver before it is read.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(pool.as_mut_ptr(), stream.context().cu_device())
            .result()
            .w()?;
        Ok(pool.assume_init())
    }
}

/// The stream-ordered pool's high-water marks and the device's used memory, MiB.
pub fn memory_report(dev: &CudaDevice) -> candle_core::Result<super::MemoryReport> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys::CUmemPool_attribute as A};
    let pool = default_pool(dev)?;
    let read = |attr: A| -> candle_core::Result<u64> {
        let mut value = 0u64;
        // SAFETY: the four attributes read here are u64 values.
        unsafe { result::mem_pool::get_attribute(pool, attr, (&mut value as *mut u64).cast()) }
            .w()?;
        Ok(value)
    };
    let (free, total) = result::mem_get_info().w()?;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    Ok(super::MemoryReport {
        pool_used_high_mib: mib(read(A::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?),
        pool_reserved_high_mib: mib(read(A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)?),
        pool_used_mib: mib(read(A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?),
        device_used_mib: mib((total - free) as u64),
    })
}

/// Starts the pool's high-water marks again from what it holds now (to measure one phase at a time).
pub fn reset_memory_high(dev: &CudaDevice) -> candle_core::Result<()> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys::CUmemPool_attribute as A};
    let pool = default_pool(dev)?;
    for attr in [
        A::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
        A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH,
    ] {
        let mut zero = 0u64;
        // SAFETY: both attributes are u64 and may only be set to zero, which resets them.
        unsafe { result::mem_pool::set_attribute(pool, attr, (&mut zero as *mut u64).cast()) }
            .w()?;
    }
    Ok(())
}

/// Returns the memory pool's unused reservations to the driver (after one-off work such as the kernel
/// checks, and between the phases of a generation, so they do not stay counted against the process).
pub fn release_cached_memory(dev: &CudaDevice) -> candle_core::Result<()> {
    use candle_core::cuda_backend::cudarc::driver::result;
    let pool = default_pool(dev)?;
    // SAFETY: trimming only returns memory no allocation holds.
    unsafe { result::mem_pool::trim_to(pool, 0) }.w()?;
    Ok(())
}

struct FusedGroupNorm {
    groups: usize,
    eps: f32,
    silu: bool,
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

/// `x` `[n, c, ...]` plus `bias[c]` broadcast over the trailing dimensions.
pub fn add_bias_channels(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?.apply_op2_no_bwd(&bias, &BiasAdd::Channels)
}

/// [`add_bias_channels`] plus `residual` (the shape of `x`) in the same pass.
pub fn add_bias_channels_residual(
    x: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    let residual = residual.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?
        .apply_op3_no_bwd(&bias, &residual, &BiasAddResidual(BiasAdd::Channels))
}

/// [`add_bias_channels`] (plus `residual` if given) written into `x` itself, for fresh outputs such as a
/// convolution's that no other tensor shares: no second tensor of the output's size exists even for a moment
/// (at VAE resolutions that is 64-128 MiB at the peak).
pub fn add_bias_channels_owned(
    x: Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    if !x.is_contiguous() {
        return match residual {
            Some(r) => add_bias_channels_residual(&x, bias, r),
            None => add_bias_channels(&x, bias),
        };
    }
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    match residual {
        Some(r) => {
            let r = r.to_dtype(x.dtype())?.contiguous()?;
            x.inplace_op3(&bias, &r, &InPlaceBias(BiasAdd::Channels))?
        }
        None => x.inplace_op2(&bias, &InPlaceBias(BiasAdd::Channels))?,
    }
    Ok(x)
}

/// A bias add (with an optional residual) into the input's own memory; see [`add_bias_channels_owned`].
struct InPlaceBias(BiasAdd);

impl InPlaceBias {
    fn run<T: DeviceRepr + WithDType>(
        &self,
        x: &mut CudaSlice<T>,
        x_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        residual: Option<(&CudaSlice<T>, &Layout)>,
        dev: &CudaDevice,
    ) -> candle_core::Result<()> {
        use candle_core::cuda_backend::cudarc::driver::DevicePtr;
        let Some((start, end)) = x_l.contiguous_offsets() else {
            candle_core::bail!("in-place bias add: input must be contiguous");
        };
        let b = contiguous_view(b, b_l, "bias")?;
        let (rows, inner, name) = self.0.geometry(x_l, b_l.shape().elem_count())?;
        let residual = match residual {
            Some((r, r_l)) if r_l.dims() == x_l.dims() => {
                Some(contiguous_view(r, r_l, "residual")?)
            }
            Some((_, r_l)) => {
                candle_core::bail!("residual {:?} does not match {:?}", r_l.dims(), x_l.dims())
            }
            None => None,
        };
        let name = if residual.is_some() {
            format!("{name}_residual")
        } else {
            name.to_string()
        };
        let func = dev.get_or_load_custom_func(&kernel_name::<T>(&name), MODULE, PTX)?;
        let mut out = x.slice_mut(start..end);
        // The kernels read element i and then write element i: input and output may be the same memory.
        let input = out.device_ptr(dev.cuda_stream().as_ref()).0;
        let (nr, ni, nc) = (rows as u32, inner as u32, b_l.shape().elem_count() as u32);
        let mut builder = func.builder();
        builder.arg(&input);
        builder.arg(&b);
        if let Some(r) = &residual {
            builder.arg(r);
        }
        builder.arg(&mut out);
        builder.arg(&nr);
        builder.arg(&ni);
        if matches!(self.0, BiasAdd::Channels) {
            builder.arg(&nc);
        }
        // SAFETY: rows * inner elements of x (and of the residual, same shape) are read and written once each;
        // bias indices stay below its length.
        unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
        Ok(())
    }
}

impl candle_core::InplaceOp2 for InPlaceBias {
    fn name(&self) -> &'static str {
        "sd-fused-bias-add-in-place"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("the in-place bias add runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        x: &mut CudaStorage,
        x_l: &Layout,
        b: &CudaStorage,
        b_l: &Layout,
    ) -> candle_core::Result<()> {
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let dev = x.device().clone();
        match (&mut x.slice, &b.slice) {
            (S::F32(x), S::F32(b)) => self.run(x, x_l, b, b_l, None, &dev),
            (S::F16(x), S::F16(b)) => self.run(x, x_l, b, b_l, None, &dev),
            (S::BF16(x), S::BF16(b)) => self.run(x, x_l, b, b_l, None, &dev),
            _ => candle_core::bail!("in-place bias add: f32, f16 or bf16 of one type only"),
        }
    }
}

impl candle_core::InplaceOp3 for InPlaceBias {
    fn name(&self) -> &'static str {
        "sd-fused-bias-add-residual-in-place"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("the in-place bias add runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        x: &mut CudaStorage,
        x_l: &Layout,
        b: &CudaStorage,
        b_l: &Layout,
        r: &CudaStorage,
        r_l: &Layout,
    ) -> candle_core::Result<()> {
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let dev = x.device().clone();
        match (&mut x.slice, &b.slice, &r.slice) {
            (S::F32(x), S::F32(b), S::F32(r)) => self.run(x, x_l, b, b_l, Some((r, r_l)), &dev),
            (S::F16(x), S::F16(b), S::F16(r)) => self.run(x, x_l, b, b_l, Some((r, r_l)), &dev),
            (S::BF16(x), S::BF16(b), S::BF16(r)) => self.run(x, x_l, b, b_l, Some((r, r_l)), &dev),
            _ => candle_core::bail!("in-place bias add: f32, f16 or bf16 of one type only"),
        }
    }
}

/// [`add_bias_columns`] plus `residual` (the shape of `x`) in the same pass.
pub fn add_bias_columns_residual(
    x: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    let residual = residual.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?
        .apply_op3_no_bwd(&bias, &residual, &BiasAddResidual(BiasAdd::Columns))
}

/// `x` `[..., n]` plus `bias[n]` on every row.
pub fn add_bias_columns(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?.apply_op2_no_bwd(&bias, &BiasAdd::Columns)
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

enum BiasAdd {
    /// Bias per dimension 1 (NCHW channels).
    Channels,
    /// Bias per last-dimension index.
    Columns,
}

impl BiasAdd {
    /// (rows, elements per row, kernel name) of `x` for this bias layout.
    fn geometry(
        &self,
        x_l: &Layout,
        bias_len: usize,
    ) -> candle_core::Result<(usize, usize, &'static str)> {
        let dims = x_l.dims();
        let total = x_l.shape().elem_count();
        let geometry = match self {
            Self::Channels => {
                if dims.len() < 2 || dims[1] != bias_len {
                    candle_core::bail!("bias add: {dims:?} has no channel dimension of {bias_len}");
                }
                let inner: usize = dims[2..].iter().product();
                (dims[0] * dims[1], inner, "bias_channels")
            }
            Self::Columns => {
                if dims.last() != Some(&bias_len) {
                    candle_core::bail!("bias add: {dims:?} does not end in {bias_len}");
                }
                (total / bias_len.max(1), bias_len, "bias_columns")
            }
        };
        if geometry.0 > u32::MAX as usize || geometry.1 > u32::MAX as usize {
            candle_core::bail!("bias add: tensor {dims:?} is too large for the fused kernel");
        }
        Ok(geometry)
    }
}

/// A bias add with a residual of the input's shape added in the same pass.
struct BiasAddResidual(BiasAdd);

impl Map3 for BiasAddResidual {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        x: &CudaSlice<T>,
        x_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        r: &CudaSlice<T>,
        r_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        if r_l.dims() != x_l.dims() {
            candle_core::bail!("residual {:?} does not match {:?}", r_l.dims(), x_l.dims());
        }
        let x = contiguous_view(x, x_l, "bias-add input")?;
        let b = contiguous_view(b, b_l, "bias")?;
        let r = contiguous_view(r, r_l, "residual")?;
        let total = x_l.shape().elem_count();
        let bias_len = b_l.shape().elem_count();
        let (rows, inner, name) = self.0.geometry(x_l, bias_len)?;
        // SAFETY: every element is written.
        let mut out = unsafe { dev.alloc::<T>(total)? };
        let name = kernel_name::<T>(&format!("{name}_residual"));
        let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
        let mut builder = func.builder();
        let (nr, ni, nc) = (rows as u32, inner as u32, bias_len as u32);
        builder.arg(&x);
        builder.arg(&b);
        builder.arg(&r);
        builder.arg(&mut out);
        builder.arg(&nr);
        builder.arg(&ni);
        if matches!(self.0, BiasAdd::Channels) {
            builder.arg(&nc);
        }
        // SAFETY: rows * inner == total for x, residual and out; bias indices stay below bias_len.
        unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(3, BiasAddResidual, "sd-fused-bias-add-residual", |l| l
    .shape()
    .clone());

impl Map2 for BiasAdd {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        x: &CudaSlice<T>,
        x_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        let x = contiguous_view(x, x_l, "bias-add input")?;
        let b = contiguous_view(b, b_l, "bias")?;
        let total = x_l.shape().elem_count();
        let bias_len = b_l.shape().elem_count();
        let (rows, inner, name) = self.geometry(x_l, bias_len)?;
        // SAFETY: every element is written.
        let mut out = unsafe { dev.alloc::<T>(total)? };
        let func = dev.get_or_load_custom_func(&kernel_name::<T>(name), MODULE, PTX)?;
        let mut builder = func.builder();
        let (r, i, c) = (rows as u32, inner as u32, bias_len as u32);
        builder.arg(&x);
        builder.arg(&b);
        builder.arg(&mut out);
        builder.arg(&r);
        builder.arg(&i);
        if matches!(self, Self::Channels) {
            builder.arg(&c);
        }
        // SAFETY: rows * inner == total; bias indices stay below bias_len (r % channels, or j < cols).
        unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(2, BiasAdd, "sd-fused-bias-add", |l| l.shape().clone());

/// Vectors of 16 bytes each lane of the LayerNorm kernel may hold, as instantiated in kernels/fused.cu.
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

/// Largest difference relative to the expected tensor's largest magnitude (half types round per ulp).
pub(super) fn relative_max_diff(actual: &Tensor, expected: &Tensor) -> candle_core::Result<f32> {
    let f = |t: &Tensor| t.to_dtype(DType::F32);
    let scale = f(expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let d = (f(actual)? - f(expected)?)?;
    Ok(d.abs()?.max_all()?.to_scalar::<f32>()? / scale.max(1.0))
}

pub(super) fn tolerance(dtype: DType, f32_tol: f32) -> f32 {
    match dtype {
        DType::F32 => f32_tol,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    }
}

/// Each fused kernel against the candle-nn composition it replaces, on random inputs on `dev`, in f32, f16
/// and bf16: UNet- and VAE-like shapes (a VAE group spans many statistics chunks), odd sizes, and inputs offset
/// by 20 so a cancelling variance formula would show.
pub fn verify(dev: &candle_core::Device) -> candle_core::Result<Vec<super::KernelCheck>> {
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
            let plain = candle_nn::GroupNorm::new(wd.clone(), bd.clone(), channels, groups, 1e-6)?;
            let expected = candle_core::Module::forward(&plain, &xd)?;
            let expected_silu = candle_nn::ops::silu(&expected)?;
            let fused = group_norm(&xd, &wd, &bd, groups, 1e-6, false)?;
            let fused_silu = group_norm(&xd, &wd, &bd, groups, 1e-6, true)?;
            let diff = relative_max_diff(&fused, &expected)?
                .max(relative_max_diff(&fused_silu, &expected_silu)?);
            checks.push(super::KernelCheck {
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
            let fused = geglu(&hd)?;
            if fused.dims() != expected.dims() {
                candle_core::bail!("geglu: shape {:?} vs {:?}", fused.dims(), expected.dims());
            }
            let bias = Tensor::randn(0f32, 1.0, shape[2], dev)?.to_dtype(dtype)?;
            let biased = hd.broadcast_add(&bias)?;
            let expected_bias =
                (biased.narrow(2, 0, half)? * biased.narrow(2, half, half)?.gelu_erf()?)?;
            checks.push(super::KernelCheck {
                kernel: "geglu_bias",
                case: format!("{shape:?} {dtype:?}"),
                relative_max_diff: relative_max_diff(&geglu_bias(&hd, &bias)?, &expected_bias)?,
                tolerance: tolerance(dtype, 1e-6),
            });
            checks.push(super::KernelCheck {
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
            checks.push(super::KernelCheck {
                kernel: "softmax_last_dim",
                case: format!("{shape:?} {dtype:?}"),
                relative_max_diff: relative_max_diff(&softmax_last_dim(&xd)?, &expected)?,
                tolerance: tolerance(dtype, 1e-5),
            });
            let in_place = softmax_last_dim_in_place(xd.copy()?)?;
            checks.push(super::KernelCheck {
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
        checks.push(super::KernelCheck {
            kernel: "bias_channels",
            case: format!("[2, 320, 24, 20] {dtype:?}"),
            relative_max_diff: relative_max_diff(&add_bias_channels(&xd, &bd)?, &expected)?,
            tolerance: tolerance(dtype, 1e-6),
        });
        let expected_res = (&expected + &xd)?;
        checks.push(super::KernelCheck {
            kernel: "bias_channels_residual",
            case: format!("[2, 320, 24, 20] {dtype:?}"),
            relative_max_diff: relative_max_diff(
                &add_bias_channels_residual(&xd, &bd, &xd)?,
                &expected_res,
            )?,
            tolerance: tolerance(dtype, 1e-6),
        });
        let (rd, bd) = (rows.to_dtype(dtype)?, bcol.to_dtype(dtype)?);
        let expected = rd.broadcast_add(&bd)?;
        checks.push(super::KernelCheck {
            kernel: "bias_columns",
            case: format!("[2, 77, 640] {dtype:?}"),
            relative_max_diff: relative_max_diff(&add_bias_columns(&rd, &bd)?, &expected)?,
            tolerance: tolerance(dtype, 1e-6),
        });
        let expected_res = (&expected + &rd)?;
        checks.push(super::KernelCheck {
            kernel: "bias_columns_residual",
            case: format!("[2, 77, 640] {dtype:?}"),
            relative_max_diff: relative_max_diff(
                &add_bias_columns_residual(&rd, &bd, &rd)?,
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
            let takes = layer_norm_vectors(cols, dtype.size_in_bytes()).is_some();
            if [320, 640, 768, 1280, 2048].contains(&cols) && !takes {
                candle_core::bail!(
                    "layer_norm: {cols} columns of {dtype:?} should take the fused kernel"
                );
            }
            let actual = match (layer_norm(&xd, &wd, &bd, 1e-5)?, takes) {
                (Some(actual), true) => actual,
                (None, false) => continue,
                (got, _) => candle_core::bail!(
                    "layer_norm: {cols} columns of {dtype:?}: kernel expected {takes}, ran {}",
                    got.is_some()
                ),
            };
            checks.push(super::KernelCheck {
                kernel: "layer_norm",
                case: format!("[2, {}, {cols}] {dtype:?}", rows / 2 + 1),
                relative_max_diff: relative_max_diff(&actual, &expected)?,
                tolerance: tolerance(dtype, 5e-5),
            });
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fused_kernels_match_their_candle_nn_compositions_on_random_inputs() {
        let dev = candle_core::Device::new_cuda(0).unwrap();
        // Every fused op: these kernels, the convolutions and flash attention.
        let checks = super::super::verify_kernels(&dev).unwrap();
        assert!(checks.len() >= 100, "{}", checks.len());
        for c in checks {
            assert!(c.passed(), "{c:?}");
        }
    }
}
