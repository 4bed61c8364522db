//! Component and end-to-end timings of a loaded pipeline, measured the way diffusers users measure theirs:
//! warm up first, synchronise the device around every timed call, report medians. `sd-worker bench` prints
//! them; tools/bench_cuda.py runs diffusers on the same folders and puts the two side by side.

use std::time::Instant;

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::{GenerateRequest, Pipeline, SizeConditioning, StepControl};
use crate::rng::BatchRng;
use crate::Result;

#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub prompt: String,
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance_scale: f64,
    pub seed: u64,
    /// Timed repeats of each component measurement (after warm-up); 0 skips the components.
    pub component_repeats: usize,
    /// Untimed runs before each measurement; `None`: 2 for text encoding, 3 for the UNet step and 1 for the
    /// VAE decode and end to end (CPU runs, seconds per call, want fewer).
    pub warmup: Option<usize>,
    /// Timed end-to-end generations (after one warm-up); 0 skips them.
    pub end_to_end_repeats: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Encoding prompt and negative prompt (both encoders for SDXL).
    pub text_encode_ms: f64,
    /// One classifier-free-guidance UNet evaluation (batch 2) including the guidance combination.
    pub unet_step_ms: f64,
    /// Host time to enqueue that step (returning before the device finishes): when it is close to
    /// `unet_step_ms` the step is bound by launch overhead, not by the GPU.
    pub unet_enqueue_ms: f64,
    /// Latents -> pixels in [0, 1] for one image.
    pub vae_decode_ms: f64,
    /// Every timed UNet step and VAE decode, milliseconds (for min/median on a noisy machine).
    pub unet_step_runs_ms: Vec<f64>,
    pub vae_decode_runs_ms: Vec<f64>,
    /// `generate()` from prompt to 8-bit RGB, `steps` steps.
    pub end_to_end_s: f64,
    /// Every timed end-to-end run, seconds.
    pub end_to_end_runs_s: Vec<f64>,
    /// Device memory after loading and after all runs (CUDA).
    pub memory_after_load: Option<crate::device::MemoryReport>,
    pub memory_after_runs: Option<crate::device::MemoryReport>,
    /// High-water marks of each phase (text encoding, UNet step, VAE decode, end to end), CUDA only.
    pub memory_by_phase: Vec<(String, crate::device::MemoryReport)>,
    #[serde(skip)]
    pub image: Option<RgbImage>,
    /// The measured components' outputs (text context, guided noise prediction, decoded pixels) in f32, to
    /// compare with a reference implementation fed the same inputs.
    #[serde(skip)]
    pub outputs: Vec<(String, Tensor)>,
}

impl BenchReport {
    /// Writes [`Self::outputs`] as one safetensors file.
    pub fn save_outputs(&self, path: &std::path::Path) -> Result<()> {
        let tensors: std::collections::HashMap<String, Tensor> =
            self.outputs.iter().cloned().collect();
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Pipeline {
    fn timed<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
        self.device.synchronize()?;
        let start = Instant::now();
        let out = f()?;
        self.device.synchronize()?;
        Ok((out, start.elapsed().as_secs_f64()))
    }

    /// Every timed run in milliseconds (none when `repeats` is 0).
    fn repeat_ms<T>(
        &self,
        warmup: usize,
        repeats: usize,
        f: impl Fn() -> Result<T>,
    ) -> Result<Vec<f64>> {
        if repeats == 0 {
            return Ok(Vec::new());
        }
        for _ in 0..warmup {
            self.timed(&f)?;
        }
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            times.push(self.timed(&f)?.1 * 1000.0);
        }
        Ok(times)
    }

    /// Measures text encoding, one guided UNet step, one VAE decode and whole generations; `phase` is told
    /// what runs next (for a progress display).
    pub fn benchmark(&self, spec: &BenchSpec, phase: &mut dyn FnMut(&str)) -> Result<BenchReport> {
        let req = GenerateRequest {
            prompt: spec.prompt.clone(),
            negative_prompt: spec.negative_prompt.clone(),
            steps: spec.steps,
            guidance_scale: spec.guidance_scale,
            width: spec.width,
            height: spec.height,
            sampler: None,
            seeds: vec![spec.seed],
            clip_skip: 1,
            init: None,
            size_conditioning: SizeConditioning::default(),
            prompt_syntax: crate::prompt::PromptSyntax::A1111,
        };
        self.validate(&req)?;
        let reps = spec.component_repeats;
        let memory_after_load = crate::device::memory_report(&self.device)?;

        // Each phase's pool high-water marks: read when the next phase starts, then restarted.
        let mut memory_by_phase = Vec::new();
        let mut current: Option<&'static str> = None;
        let mut phase = |next: Option<&'static str>| -> Result<()> {
            if let Some(done) = current {
                if let Some(report) = crate::device::memory_report(&self.device)? {
                    memory_by_phase.push((done.to_string(), report));
                }
            }
            crate::device::reset_memory_high(&self.device)?;
            current = next;
            if let Some(name) = next {
                phase(name);
            }
            Ok(())
        };

        phase(Some("text encoding"))?;
        let warm = |default: usize| spec.warmup.unwrap_or(default);
        let text_encode_ms = median(self.repeat_ms(warm(2), reps, || self.conditioning(&req))?);

        phase(Some("UNet step"))?;
        let cond = self.conditioning(&req)?;
        let cond = cond.at(0);
        let scheduler = self.scheduler_for(&req)?;
        let m = self.info.size_multiple;
        let shape = [
            1,
            self.vae.config().latent_channels,
            spec.height / m,
            spec.width / m,
        ];
        let latents = BatchRng::from_seeds(&[spec.seed]).randn(&shape, &self.device, self.dtype)?;
        let t = scheduler.timesteps().first().copied().unwrap_or(999.0);
        let guidance = spec.guidance_scale;
        let unet_step_runs_ms = self.repeat_ms(warm(3), reps, || {
            self.predict_noise(scheduler.as_ref(), &latents, t, cond, guidance, None)
        })?;

        // Enqueue time means something on asynchronous devices only; on the CPU it is the step time again.
        let enqueue_reps = if self.device.is_cpu() { 0 } else { reps };
        let mut enqueue = Vec::with_capacity(enqueue_reps);
        for _ in 0..enqueue_reps {
            self.device.synchronize()?;
            let start = Instant::now();
            let out = self.predict_noise(scheduler.as_ref(), &latents, t, cond, guidance, None)?;
            enqueue.push(start.elapsed().as_secs_f64() * 1000.0);
            drop(out);
            self.device.synchronize()?;
        }
        let unet_enqueue_ms = median(enqueue);

        phase(Some("VAE decode"))?;
        let vae_decode_runs_ms =
            self.repeat_ms(warm(1), reps, || self.decode_to_pixels(&latents))?;

        let f32 = |t: Tensor| t.to_dtype(DType::F32);
        let outputs = if reps == 0 {
            Vec::new()
        } else {
            vec![
                ("context".to_string(), f32(cond.context.clone())?),
                (
                    "noise_pred".to_string(),
                    // The step a profiler attached with `--profile-from-start off` records.
                    f32(crate::device::profiled(&self.device, || {
                        self.predict_noise(scheduler.as_ref(), &latents, t, cond, guidance, None)
                            .map_err(candle_core::Error::wrap)
                    })?)?,
                ),
                ("pixels".to_string(), self.decode_to_pixels(&latents)?),
            ]
        };

        phase(Some("end to end"))?;
        let run = || -> Result<(Vec<RgbImage>, f64)> {
            self.timed(|| Ok(self.generate(&req, &mut |_| StepControl::Continue)?.images))
        };
        if spec.end_to_end_repeats > 0 {
            for _ in 0..warm(1) {
                run()?;
            }
        }
        let mut image = None;
        let mut runs = Vec::with_capacity(spec.end_to_end_repeats);
        for _ in 0..spec.end_to_end_repeats {
            let (images, seconds) = run()?;
            image = image.or_else(|| images.into_iter().next());
            runs.push(seconds);
        }
        phase(None)?;
        let memory_after_runs = crate::device::memory_report(&self.device)?;
        Ok(BenchReport {
            memory_by_phase,
            memory_after_load,
            memory_after_runs,
            text_encode_ms,
            unet_step_ms: median(unet_step_runs_ms.clone()),
            unet_enqueue_ms,
            vae_decode_ms: median(vae_decode_runs_ms.clone()),
            unet_step_runs_ms,
            vae_decode_runs_ms,
            end_to_end_s: median(runs.clone()),
            end_to_end_runs_s: runs,
            image,
            outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
