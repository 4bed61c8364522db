//! Per-job random numbers that reproduce PyTorch's CPU generator (`torch.Generator("cpu").manual_seed(seed)`).
//!
//! Each image of a job owns one [`TorchRng`]; a batch draws from [`BatchRng`], which stacks one draw per image
//! along dim 0, as diffusers' `randn_tensor` does with a list of generators. Nothing here is shared between jobs.

use candle_core::{DType, Device, Tensor};

/// PyTorch's CPU generator: mt19937 seeded like `manual_seed`, with torch's `randn` algorithm.
#[derive(Clone, Debug)]
pub struct TorchRng {
    seed: u64,
}

impl TorchRng {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// `torch.randn(n, generator=g, dtype=torch.float32)` flattened.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        let _ = n;
        Vec::new()
    }
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

    pub fn len(&self) -> usize {
        self.generators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.generators.is_empty()
    }

    /// `shape` (dim 0 = 1) drawn from generator 0 alone.
    pub fn randn_first(
        &mut self,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        let _ = (shape, device, dtype);
        candle_core::bail!("rng not implemented yet")
    }

    /// A standard-normal tensor of `shape` (dim 0 = batch, one slice per generator), drawn in f32 on the CPU
    /// exactly as torch does, then moved to `device` and cast to `dtype`.
    pub fn randn(
        &mut self,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        let _ = (shape, device, dtype);
        candle_core::bail!("rng not implemented yet")
    }
}
