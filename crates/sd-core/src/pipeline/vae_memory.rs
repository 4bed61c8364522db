//! When the VAE runs whole and when in tiles. `--vae-tiling auto` decodes (and encodes) whole whenever that
//! fits, as diffusers, A1111 and ComfyUI do by default, so a seed gives the same image whatever its size; it
//! tiles only when memory requires it: on CUDA after a whole pass runs out of memory (as ComfyUI does), on the
//! CPU and Metal when an estimate of the whole pass's peak memory exceeds the budget the caller gives
//! (`--vae-memory-budget`). Tiling is never silent: the output says whether the decode was tiled.

use candle_core::Tensor;

use super::{Pipeline, VaeTiling};
use crate::models::vae::VaeConfig;
use crate::Result;

/// How one VAE pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilePlan {
    Whole,
    Tiled,
    /// Whole, and tiled again if the whole pass runs out of device memory (CUDA).
    WholeElseTiled,
}

impl VaeTiling {
    /// The plan for a pass over an input `larger_than_tile` whose whole pass needs about `estimate` bytes.
    /// `budget`: the most a whole pass may use where out-of-memory cannot be caught (`None`: no limit);
    /// `recoverable_oom`: the device reports out-of-memory as an error (CUDA) rather than aborting.
    pub fn plan(
        self,
        larger_than_tile: bool,
        estimate: u64,
        budget: Option<u64>,
        recoverable_oom: bool,
    ) -> TilePlan {
        match self {
            Self::Off => TilePlan::Whole,
            Self::On if larger_than_tile => TilePlan::Tiled,
            Self::On => TilePlan::Whole,
            Self::Auto if !larger_than_tile => TilePlan::Whole,
            Self::Auto if recoverable_oom => TilePlan::WholeElseTiled,
            Self::Auto => match budget {
                Some(budget) if estimate > budget => TilePlan::Tiled,
                _ => TilePlan::Whole,
            },
        }
    }
}

/// About how many bytes a whole VAE decode of a `batch` of `height` x `width` pixel images holds at its peak:
/// the larger of the mid-block self-attention (its `tokens`² score matrix, and the softmax of it) and the
/// widest full-size activations (a resnet's input, norm, activation, convolution outputs and residual, plus
/// the upsampled input of the next block). An estimate with some margin, not an exact count; the encoder's
/// peak is of the same order, so the same estimate serves it.
pub fn estimate_decode_bytes(
    config: &VaeConfig,
    batch: usize,
    height: usize,
    width: usize,
    dtype_bytes: usize,
) -> u64 {
    let channels = &config.block_out_channels;
    let levels = channels.len().max(1);
    let area = (height as u64) * (width as u64);
    // Level 0 is full size, with block_out_channels[0] channels; each level up halves the size.
    let conv = (0..levels)
        .map(|k| {
            let here = channels.get(k).copied().unwrap_or(0) as u64;
            let below = channels.get(k + 1).copied().unwrap_or(0) as u64;
            (5 * here + 2 * below) * (area >> (2 * k))
        })
        .max()
        .unwrap_or(0);
    let tokens = area >> (2 * (levels - 1));
    let deepest = channels.last().copied().unwrap_or(0) as u64;
    let attention = if config.mid_block_add_attention {
        2 * tokens * tokens + 5 * deepest * tokens
    } else {
        0
    };
    (batch as u64)
        .saturating_mul(conv.max(attention))
        .saturating_mul(dtype_bytes as u64)
}

/// Whether a candle error is a device running out of memory (CUDA reports it as an error; the CPU aborts).
pub fn is_out_of_memory(error: &crate::CoreError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("out of memory") || text.contains("out_of_memory")
}

impl Pipeline {
    /// The plan for a VAE pass over `batch` images of `height` x `width` pixels, whose input is
    /// `larger_than_tile`.
    pub(super) fn vae_plan(
        &self,
        larger_than_tile: bool,
        batch: usize,
        height: usize,
        width: usize,
    ) -> TilePlan {
        let estimate = estimate_decode_bytes(
            self.vae.config(),
            batch,
            height,
            width,
            self.vae_dtype.size_in_bytes(),
        );
        self.vae_tiling.plan(
            larger_than_tile,
            estimate,
            self.vae_memory_budget,
            self.device.is_cuda(),
        )
    }

    /// Runs `whole` or `tiled` as `plan` says; returns the result and whether it was tiled.
    pub(super) fn run_planned<T>(
        &self,
        plan: TilePlan,
        whole: impl FnOnce() -> Result<T>,
        tiled: impl FnOnce() -> Result<T>,
    ) -> Result<(T, bool)> {
        match plan {
            TilePlan::Whole => Ok((whole()?, false)),
            TilePlan::Tiled => Ok((tiled()?, true)),
            TilePlan::WholeElseTiled => match whole() {
                Ok(out) => Ok((out, false)),
                Err(e) if is_out_of_memory(&e) => {
                    tracing::warn!(error = %e, "whole VAE pass ran out of memory; tiling it");
                    crate::device::release_cached_memory(&self.device)?;
                    Ok((tiled()?, true))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Decodes scaled latents `z` (`[batch, C, h, w]`) as the tiling mode and memory allow.
    pub(super) fn decode_planned(&self, z: &Tensor) -> Result<(Tensor, bool)> {
        let (batch, _, h, w) = z.dims4()?;
        let cfg = self.vae.config();
        let tile = cfg.tile_geometry().latent;
        let factor = 1usize << cfg.block_out_channels.len().saturating_sub(1);
        let plan = self.vae_plan(h > tile || w > tile, batch, h * factor, w * factor);
        self.run_planned(plan, || self.vae.decode(z), || self.vae.decode_tiled(z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_decodes_whole_unless_memory_requires_tiles() {
        let auto = VaeTiling::Auto;
        assert_eq!(auto.plan(false, 10, Some(1), false), TilePlan::Whole);
        assert_eq!(auto.plan(true, 10, None, false), TilePlan::Whole);
        assert_eq!(auto.plan(true, 10, Some(100), false), TilePlan::Whole);
        assert_eq!(auto.plan(true, 101, Some(100), false), TilePlan::Tiled);
        assert_eq!(
            auto.plan(true, 101, Some(100), true),
            TilePlan::WholeElseTiled
        );
        assert_eq!(VaeTiling::On.plan(true, 0, None, false), TilePlan::Tiled);
        assert_eq!(VaeTiling::On.plan(false, 0, None, false), TilePlan::Whole);
        assert_eq!(
            VaeTiling::Off.plan(true, 1 << 40, Some(1), false),
            TilePlan::Whole
        );
    }

    #[test]
    fn the_estimate_grows_with_size_and_is_attention_bound_for_large_images() {
        let sd15: VaeConfig = serde_json::from_value(serde_json::json!({
            "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            "layers_per_block": 2,
            "norm_num_groups": 32,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let small = estimate_decode_bytes(&sd15, 1, 512, 512, 4);
        let large = estimate_decode_bytes(&sd15, 1, 2048, 2048, 4);
        // 512²: 64² latents -> convolutions dominate (~1.2 GB); 2048²: the 256² attention matrix (~34 GB).
        assert!((500 << 20..2 << 30).contains(&small), "{small}");
        assert!(large > 30 << 30, "{large}");
        assert_eq!(estimate_decode_bytes(&sd15, 2, 512, 512, 4), 2 * small);
        let oom = crate::CoreError::Candle(candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        ));
        assert!(is_out_of_memory(&oom));
    }
}
