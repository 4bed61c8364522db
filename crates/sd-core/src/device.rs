//! The model thread's device: setting a new one up, profiler brackets, and where its memory went (CUDA's
//! stream-ordered pool; elsewhere there is nothing to set up or report). The CUDA calls live in
//! crate::cuda::memory.

/// Prepares a new device for the model thread (CUDA: allocator and event settings; others: nothing).
pub fn configure_device(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return crate::cuda::memory::configure_device(dev);
    }
    let _ = device;
    Ok(())
}

/// Runs `f` as the profiled region of a CUDA profiler started with `--profile-from-start off` (ncu, nsys);
/// elsewhere just runs it.
pub fn profiled<T>(
    device: &candle_core::Device,
    f: impl FnOnce() -> candle_core::Result<T>,
) -> candle_core::Result<T> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return crate::cuda::memory::profiled(dev, f);
    }
    let _ = device;
    f()
}

/// Where device memory went, for benchmarks (CUDA only).
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryReport {
    /// Most bytes the stream-ordered pool handed out at once (live tensors and workspaces).
    pub pool_used_high_mib: f64,
    /// Most bytes the pool held from the driver (the above plus what it kept for reuse).
    pub pool_reserved_high_mib: f64,
    /// Bytes handed out now.
    pub pool_used_mib: f64,
    /// Device memory in use now, by every process.
    pub device_used_mib: f64,
}

pub fn memory_report(device: &candle_core::Device) -> candle_core::Result<Option<MemoryReport>> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return crate::cuda::memory::memory_report(dev).map(Some);
    }
    let _ = device;
    Ok(None)
}

/// Restarts the high-water marks of [`memory_report`] (CUDA; elsewhere nothing to do).
pub fn reset_memory_high(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return crate::cuda::memory::reset_memory_high(dev);
    }
    let _ = device;
    Ok(())
}

/// Gives the device's unused cached memory back (CUDA; elsewhere nothing to do).
pub fn release_cached_memory(device: &candle_core::Device) -> candle_core::Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return crate::cuda::memory::release_cached_memory(dev);
    }
    let _ = device;
    Ok(())
}
