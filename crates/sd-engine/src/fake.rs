//! A deterministic stand-in for the inference core, for tests and load tests of the layers above it: no
//! weights, a configurable sleep per step, and images that depend only on (seed, prompt, size), so a job's
//! result never depends on what else ran. Prompts containing `[fail]` fail and `[panic]` panic, to exercise
//! the engine's error paths. A step checks the interrupt flag as the UNet does between blocks, except with
//! `[stuck]` in the prompt (a step that cannot be stopped, for shutdown's last resort).

use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use sd_core::models::Family;
use sd_core::pipeline::{
    DTypeSpec, GenerateOutput, GenerateRequest, ModelInfo, StepControl, Timings,
};
use sd_core::schedulers::{PredictionType, SamplerKind};
use sd_core::CoreError;

use crate::backend::{Backend, StepProgress};
use crate::metadata::ModelHash;

pub struct FakeBackend {
    info: ModelInfo,
    step_delay: Duration,
    hash: ModelHash,
}

impl FakeBackend {
    pub fn new(step_delay: Duration) -> Self {
        Self {
            info: Self::default_info(),
            step_delay,
            hash: Self::model_hash(),
        }
    }

    /// SD 1.x-like defaults, so request defaults behave as with a real SD 1.5 model.
    pub fn default_info() -> ModelInfo {
        ModelInfo {
            model: "fake".into(),
            family: Family::Sd1,
            prediction_type: PredictionType::Epsilon,
            device: "cpu".into(),
            dtype: DTypeSpec::F32,
            default_width: 512,
            default_height: 512,
            default_steps: 20,
            default_guidance: 7.5,
            default_sampler: SamplerKind::Pndm,
            size_multiple: 8,
            inpainting: false,
            embeddings: Default::default(),
        }
    }

    /// The fake's stand-in weights hash (its short form is `fa4e0000f4`).
    pub fn model_hash() -> ModelHash {
        ModelHash {
            sha256: format!("fa4e0000f4{}", "0".repeat(54)),
            legacy: None,
        }
    }

    /// The image the fake produces for one seed: what a caller can compare a job's output against.
    pub fn image_for(seed: u64, prompt: &str, width: u32, height: u32) -> RgbImage {
        let key = seed ^ fnv1a(prompt.as_bytes());
        RgbImage::from_fn(width, height, |x, y| {
            let bits = splitmix64(key ^ ((u64::from(y) << 32) | u64::from(x)));
            let [r, g, b, ..] = bits.to_le_bytes();
            Rgb([r, g, b])
        })
    }
}

impl Backend for FakeBackend {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn model_hash(&self) -> Option<&ModelHash> {
        Some(&self.hash)
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepProgress<'_>) -> StepControl,
    ) -> sd_core::Result<GenerateOutput> {
        let started = Instant::now();
        if request.prompt.contains("[panic]") {
            panic!("fake backend asked to panic");
        }
        if request.prompt.contains("[fail]") {
            return Err(CoreError::InvalidInput("fake backend asked to fail".into()));
        }
        let preview = || Ok(RgbImage::from_pixel(8, 8, Rgb([128, 64, 32])));
        let stuck = request.prompt.contains("[stuck]");
        for step in 1..=request.steps {
            if stuck {
                std::thread::sleep(self.step_delay);
            } else {
                sleep_checking_interrupt(self.step_delay)?;
            }
            if on_step(&StepProgress::new(step, request.steps, &preview)) == StepControl::Stop {
                return Err(CoreError::Cancelled);
            }
        }
        let size =
            |value: usize| u32::try_from(value).map_err(|_| CoreError::InvalidInput("size".into()));
        let (width, height) = (size(request.width)?, size(request.height)?);
        let images = request
            .seeds
            .iter()
            .map(|&seed| Self::image_for(seed, &request.prompt, width, height))
            .collect();
        let total_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(GenerateOutput {
            images,
            seeds: request.seeds.clone(),
            loras: Default::default(),
            timings: Timings {
                denoise_ms: total_ms,
                total_ms,
                ..Timings::default()
            },
            vae_tiled: false,
            warnings: Vec::new(),
        })
    }
}

/// Sleeps like a UNet step, checking the interrupt flag every few milliseconds as the UNet does between its
/// blocks.
fn sleep_checking_interrupt(delay: Duration) -> sd_core::Result<()> {
    let until = Instant::now() + delay;
    loop {
        sd_core::interrupt::check()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(5)));
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
