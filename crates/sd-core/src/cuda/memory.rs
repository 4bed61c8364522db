//! Device-level CUDA calls: the model thread's allocator and event settings, profiler brackets, and the
//! stream-ordered pool's accounting (see crate::device for the device-independent API).
#![allow(unsafe_code)] // driver calls are FFI; each states why its arguments are valid.

use candle_core::cuda_backend::WrapErr;
use candle_core::CudaDevice;

use crate::device::MemoryReport;

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
pub fn memory_report(dev: &CudaDevice) -> candle_core::Result<MemoryReport> {
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
    Ok(MemoryReport {
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
