//! Per-job random numbers that reproduce PyTorch's CPU generator (`torch.Generator("cpu").manual_seed(seed)`).
//!
//! Each image of a job owns one [`TorchRng`]; a batch draws from [`BatchRng`], which stacks one draw per image
//! along dim 0, as diffusers' `randn_tensor` does with a list of generators. Nothing here is shared between jobs.
//!
//! Bit-exact with torch 2.x on x86-64 (the AVX2 `normal_` kernel, which torch also uses on AVX-512 machines).
//! Torch on other CPUs (ARM, or x86 without AVX2) computes the Box-Muller step with libm instead and differs
//! from this, and from x86 torch, by an ulp or two on some values.

mod cephes;
mod mt19937;

use candle_core::{DType, Device, Tensor};
use mt19937::Mt19937;

/// Torch transforms whole blocks of this many uniforms at once (8 Box-Muller pairs, one AVX2 register each).
const BLOCK: usize = 16;
const HALF_BLOCK: usize = BLOCK / 2;

/// PyTorch's CPU generator: mt19937 seeded like `manual_seed`, with torch's `randn` algorithm.
#[derive(Clone, Debug)]
pub struct TorchRng {
    seed: u64,
    engine: Mt19937,
    /// The second value of the last scalar Box-Muller pair, which torch keeps in the generator and hands
    /// out on the next scalar draw (`next_double_normal_sample`). Only the small-tensor path uses it.
    cached_normal: Option<f64>,
}

impl TorchRng {
    /// Like `torch.Generator("cpu").manual_seed(seed)`. Torch takes seeds in `[-2^63, 2^64)` and maps a
    /// negative seed `s` to `s + 2^64`; pass that value here. Only the low 32 bits reach the mt19937 state.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            engine: Mt19937::new(seed),
            cached_normal: None,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// `torch.randn(n, generator=g, dtype=torch.float32)` flattened (any shape with `n` elements).
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < BLOCK {
            return (0..n).map(|_| self.scalar_normal() as f32).collect();
        }
        let mut out: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in out.chunks_exact_mut(BLOCK) {
            box_muller_block(block);
        }
        let ragged = n % BLOCK;
        if ragged > 0 {
            // Torch redraws a whole block for the ragged tail and writes it over the last 16 slots,
            // overwriting part of the previous block; the uniforms already drawn there are wasted.
            let tail = &mut out[n - BLOCK..];
            for value in tail.iter_mut() {
                *value = self.uniform_f32();
            }
            box_muller_block(tail);
        }
        out
    }

    /// `torch.rand(n, generator=g, dtype=torch.float32)`: uniform in `[0, 1)` with 24 random bits each.
    pub fn rand(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform_f32()).collect()
    }

    fn uniform_f32(&mut self) -> f32 {
        const MANTISSA: u32 = (1 << f32::MANTISSA_DIGITS) - 1;
        const SCALE: f32 = 1.0 / (1u32 << f32::MANTISSA_DIGITS) as f32;
        (self.engine.next_u32() & MANTISSA) as f32 * SCALE
    }

    fn uniform_f64(&mut self) -> f64 {
        const MANTISSA: u64 = (1 << f64::MANTISSA_DIGITS) - 1;
        const SCALE: f64 = 1.0 / (1u64 << f64::MANTISSA_DIGITS) as f64;
        (self.engine.next_u64() & MANTISSA) as f64 * SCALE
    }

    /// Torch's `normal_distribution<double>`, used for tensors of fewer than 16 elements: Box-Muller in
    /// double with libm, returning the cosine value and caching the sine one.
    fn scalar_normal(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }
}

/// Box-Muller over one block in place: lanes `0..8` hold the first uniforms of each pair, lanes `8..16` the
/// second. Mirrors torch's AVX2 `NormalFill16` in single precision.
fn box_muller_block(block: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let (first, second) = block.split_at_mut(HALF_BLOCK);
    for (a, b) in first.iter_mut().zip(second.iter_mut()) {
        // 1 - u maps [0, 1) to (0, 1] so the log is finite.
        let radius = (-2.0 * cephes::log(1.0 - *a)).sqrt();
        let (sin, cos) = cephes::sin_cos(two_pi * *b);
        // Torch finishes with fma(n, std, mean) = n * 1 + 0, which turns -0.0 into +0.0.
        *a = radius * cos + 0.0;
        *b = radius * sin + 0.0;
    }
}

/// Errors from drawing a batch.
#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error("noise shape {shape:?} needs dim 0 equal to the number of generators ({generators})")]
    BatchMismatch {
        shape: Vec<usize>,
        generators: usize,
    },
}

/// One generator per image of a batch.
#[derive(Clone, Debug)]
pub struct BatchRng {
    generators: Vec<TorchRng>,
}

impl BatchRng {
    pub fn from_seeds(seeds: &[u64]) -> Self {
        Self {
            generators: seeds.iter().map(|&s| TorchRng::new(s)).collect(),
        }
    }

    pub fn from_generators(generators: Vec<TorchRng>) -> Self {
        Self { generators }
    }

    pub fn len(&self) -> usize {
        self.generators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.generators.is_empty()
    }

    pub fn generators(&self) -> &[TorchRng] {
        &self.generators
    }

    pub fn generators_mut(&mut self) -> &mut [TorchRng] {
        &mut self.generators
    }

    /// Generator `i` draws `torch.randn(shape[1..])`, concatenated along dim 0: diffusers' `randn_tensor`
    /// with a list of CPU generators.
    pub fn randn_vec(&mut self, shape: &[usize]) -> Result<Vec<f32>, RngError> {
        let per_item = self.per_item_len(shape)?;
        let mut out = Vec::with_capacity(per_item * self.generators.len());
        for generator in &mut self.generators {
            out.extend(generator.randn(per_item));
        }
        Ok(out)
    }

    /// A standard-normal tensor of `shape` (dim 0 = batch, one slice per generator), drawn in f32 on the CPU
    /// exactly as torch does, then moved to `device` and cast to `dtype`.
    pub fn randn(
        &mut self,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        let values = self.randn_vec(shape).map_err(candle_core::Error::wrap)?;
        Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_device(device)?
            .to_dtype(dtype)
    }

    /// `shape` (dim 0 must be 1) drawn from generator 0 alone: diffusers' inpainting encodes its single input
    /// image with `generator[0]` even when the batch has several generators.
    pub fn randn_first(
        &mut self,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        let Some(first) = self.generators.first_mut() else {
            candle_core::bail!("no generator to draw from");
        };
        if shape.first() != Some(&1) {
            candle_core::bail!("randn_first draws one item, got shape {shape:?}");
        }
        let values = first.randn(shape.iter().product());
        Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_device(device)?
            .to_dtype(dtype)
    }

    fn per_item_len(&self, shape: &[usize]) -> Result<usize, RngError> {
        match shape.split_first() {
            Some((&batch, rest)) if batch == self.generators.len() => Ok(rest.iter().product()),
            _ => Err(RngError::BatchMismatch {
                shape: shape.to_vec(),
                generators: self.generators.len(),
            }),
        }
    }
}
