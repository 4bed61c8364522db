//! CPU kernels for the UNet's and VAE's hot spots (f32), called from the layers in `crate::nn` with one
//! dispatch line each; every other dtype and device keeps candle's composition.
//!
//! - [`attention`]: tiled flash-style attention (online softmax over key blocks, no N x N score matrix).
//! - [`conv`]: 2-D convolutions as GEMMs over cache-sized im2col tiles (1x1 kernels straight on the input),
//!   bias and residual folded into the GEMM's destination.
//! - [`groupnorm`]: GroupNorm with an optional SiLU in one statistics pass and one normalisation pass.
//! - [`linear`]: `x W^T + b (+ residual)` as one GEMM whose destination starts as bias (+ residual).
//!
//! Work is split over rayon's pool (the one candle uses) and every GEMM inside a task runs single-threaded,
//! so cores are never oversubscribed. [`math`] holds the vectorisable exp/SiLU with runtime CPU detection.

pub mod attention;
pub mod conv;
mod gemm;
pub mod groupnorm;
pub mod linear;
mod math;

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// Runs `f` on the f32 elements of a contiguous CPU tensor (no copy when `t` is contiguous already).
pub(crate) fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let slice = cpu_slice(&storage, layout)?;
    f(slice)
}

fn cpu_slice<'a>(storage: &'a Storage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        candle_core::bail!("cpu kernel called on a non-CPU tensor")
    };
    let CpuStorage::F32(all) = cpu else {
        use candle_core::backend::BackendStorage;
        candle_core::bail!("cpu kernel called on a {:?} tensor", cpu.dtype())
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("cpu kernel called on a non-contiguous layout")
    };
    Ok(&all[start..end])
}

static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Switches the CPU kernels on or off process-wide (off: candle's plain composition everywhere, for
/// before/after measurements).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the CPU kernels take this tensor (f32 on the CPU, kernels enabled).
pub fn applies(t: &Tensor) -> bool {
    t.device().is_cpu()
        && t.dtype() == candle_core::DType::F32
        && ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The number of rayon threads the kernels split work for.
fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Largest absolute difference divided by the largest absolute reference value (test helper).
#[cfg(test)]
pub(crate) fn relative_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_default();
    let b = b
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_default();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}
