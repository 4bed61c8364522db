//! The generation path shared by text-to-image, image-to-image and inpainting: text conditioning, the
//! denoising loop with classifier-free guidance, and decoding latents to 8-bit RGB.

use std::time::Instant;

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::conditioning::{CondSchedule, Conditioning};
use super::{GenerateOutput, GenerateRequest, Pipeline, StepControl, StepEvent, Timings};
use crate::models::unet::AddedConditions;
use crate::rng::BatchRng;
use crate::schedulers::{build_scheduler, Scheduler};
use crate::{CoreError, Result};

impl Pipeline {
    pub(super) fn validate(&self, req: &GenerateRequest) -> Result<()> {
        let m = self.info.size_multiple;
        let bad = |msg: String| Err(CoreError::InvalidInput(msg));
        if req.width == 0
            || req.height == 0
            || !req.width.is_multiple_of(m)
            || !req.height.is_multiple_of(m)
        {
            return bad(format!(
                "width and height must be positive multiples of {m} (got {}x{})",
                req.width, req.height
            ));
        }
        if req.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if req.seeds.is_empty() {
            return bad("at least one seed (one image) is needed".into());
        }
        if !req.guidance_scale.is_finite() || req.guidance_scale < 0.0 {
            return bad("guidance_scale must be a finite number >= 0".into());
        }
        Ok(())
    }

    pub(super) fn scheduler_for(&self, req: &GenerateRequest) -> Result<Box<dyn Scheduler>> {
        let kind = req.sampler.unwrap_or(self.default_sampler);
        build_scheduler(kind, &self.scheduler_config, req.steps)
    }

    /// Runs the UNet with classifier-free guidance on `latents` at timestep `t`.
    pub(super) fn predict_noise(
        &self,
        scheduler: &dyn Scheduler,
        latents: &Tensor,
        t: f64,
        cond: &Conditioning,
        guidance: f64,
        extra_channels: Option<&Tensor>,
    ) -> Result<Tensor> {
        let scaled = scheduler.scale_model_input(latents)?;
        let scaled = match extra_channels {
            Some(extra) => Tensor::cat(&[&scaled, extra], 1)?,
            None => scaled,
        };
        if let (true, Some(uncond_context)) = (cond.guided, &cond.uncond_context) {
            // Contexts of different lengths cannot share a batch: one UNet call each (A1111's default).
            let batch = latents.dim(0)?;
            let half = |start: usize| -> Result<Option<(Tensor, Tensor)>> {
                cond.sdxl
                    .as_ref()
                    .map(|(e, t)| Ok((e.narrow(0, start, batch)?, t.narrow(0, start, batch)?)))
                    .transpose()
            };
            let (neg_added, pos_added) = (half(0)?, half(batch)?);
            fn as_added(a: &Option<(Tensor, Tensor)>) -> Option<AddedConditions<'_>> {
                a.as_ref().map(|(text_embeds, time_ids)| AddedConditions {
                    text_embeds,
                    time_ids,
                })
            }
            let uncond = self.unet.forward(
                &scaled,
                t,
                uncond_context,
                as_added(&neg_added).as_ref(),
                None,
            )?;
            let text = self.unet.forward(
                &scaled,
                t,
                &cond.context,
                as_added(&pos_added).as_ref(),
                None,
            )?;
            return Ok((&uncond + ((text - &uncond)? * guidance)?)?);
        }
        if cond.guided {
            let input = Tensor::cat(&[&scaled, &scaled], 0)?;
            let out = self
                .unet
                .forward(&input, t, &cond.context, cond.added().as_ref(), None)?;
            let batch = latents.dim(0)?;
            let uncond = out.narrow(0, 0, batch)?;
            let text = out.narrow(0, batch, batch)?;
            Ok((&uncond + ((text - &uncond)? * guidance)?)?)
        } else {
            self.unet.forward(
                &scaled,
                t,
                &cond.context,
                cond.added().as_ref(),
                cond.timestep_cond.as_ref(),
            )
        }
    }

    /// The loop over `timesteps()[begin..]`, reporting each step to `on_step`. `after_step` lets inpainting
    /// blend the known region back in.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn denoise(
        &self,
        scheduler: &mut dyn Scheduler,
        mut latents: Tensor,
        cond: &CondSchedule,
        req: &GenerateRequest,
        rng: &mut BatchRng,
        extra_channels: Option<&Tensor>,
        after_step: &mut dyn FnMut(usize, Tensor) -> Result<Tensor>,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<Tensor> {
        let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
        let begin = scheduler.begin_index();
        let calls = timesteps.len().saturating_sub(begin);
        let counter = StepCounter::new(req.steps, timesteps.len(), calls);
        for (i, &t) in timesteps.iter().enumerate().skip(begin) {
            let noise_pred = self.predict_noise(
                scheduler,
                &latents,
                t,
                cond.at(i - begin),
                req.guidance_scale,
                extra_channels,
            )?;
            latents = scheduler.step(&noise_pred, &latents, rng)?;
            latents = after_step(i, latents)?;
            let event = StepEvent {
                step: counter.step_after(i - begin + 1),
                total: counter.total,
                latents: &latents,
                latent_to_rgb: &self.previewer,
            };
            if on_step(&event) == StepControl::Stop {
                return Err(CoreError::Cancelled);
            }
        }
        Ok(latents)
    }

    /// Latents (scaled, as the UNet sees them) -> 8-bit RGB images.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Vec<RgbImage>> {
        Ok(self.decode_latents_reporting(latents)?.0)
    }

    /// [`Self::decode_latents`], and whether the decode was tiled.
    pub(super) fn decode_latents_reporting(
        &self,
        latents: &Tensor,
    ) -> Result<(Vec<RgbImage>, bool)> {
        let (pixels, tiled) = self.decode_to_pixels_reporting(latents)?;
        Ok((to_rgb_images(&pixels)?, tiled))
    }

    /// Latents -> pixels in [0, 1], `[batch, 3, H, W]` f32, as diffusers' `output_type="np"` before rounding.
    pub fn decode_to_pixels(&self, latents: &Tensor) -> Result<Tensor> {
        Ok(self.decode_to_pixels_reporting(latents)?.0)
    }

    fn decode_to_pixels_reporting(&self, latents: &Tensor) -> Result<(Tensor, bool)> {
        // The UNet's cached activations and the VAE's (several times larger at full resolution) would otherwise
        // both stay reserved: peak memory is then the larger of the two phases, not their union.
        crate::device::release_cached_memory(&self.device)?;
        let out = self.decode_to_pixels_cached(latents)?;
        crate::device::release_cached_memory(&self.device)?;
        Ok(out)
    }

    fn decode_to_pixels_cached(&self, latents: &Tensor) -> Result<(Tensor, bool)> {
        let cfg = self.vae.config();
        let mut z = (latents.to_dtype(self.vae_dtype)? / cfg.scaling_factor)?;
        if let Some(shift) = cfg.shift_factor {
            z = (z + shift)?;
        }
        let (image, tiled) = self.decode_planned(&z)?;
        let image = image.to_dtype(DType::F32)?;
        Ok((((image / 2.0)? + 0.5)?.clamp(0f32, 1f32)?, tiled))
    }

    /// Text-to-image (and, with `init`, image-to-image or inpainting). `<lora:NAME:WEIGHT>` tags in the
    /// prompt are taken out of the text and their LoRAs applied for this run (see [`crate::adapters`]).
    pub fn generate(
        &self,
        req: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<GenerateOutput> {
        let (req, loras) = self.prepare_loras(req)?;
        let mut output = self.generate_base(&req, on_step)?;
        // Keys that matched no layer did not stop the job, but the caller must hear of them.
        output.warnings.extend(loras.warnings.iter().cloned());
        output.loras = loras;
        Ok(output)
    }

    fn generate_base(
        &self,
        req: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<GenerateOutput> {
        self.validate(req)?;
        if req.init.is_some() {
            return self.generate_from_image(req, on_step);
        }
        let started = Instant::now();
        let cond = self.conditioning(req)?;
        let text_done = Instant::now();
        let mut scheduler = self.scheduler_for(req)?;
        let mut rng = BatchRng::from_seeds(&req.seeds);
        let m = self.info.size_multiple;
        let channels = self.vae.config().latent_channels;
        let shape = [req.seeds.len(), channels, req.height / m, req.width / m];
        let latents =
            (rng.randn(&shape, &self.device, self.dtype)? * scheduler.init_noise_sigma())?;
        let latents = self.denoise(
            scheduler.as_mut(),
            latents,
            &cond,
            req,
            &mut rng,
            None,
            &mut |_, l| Ok(l),
            on_step,
        )?;
        let denoised = Instant::now();
        let (images, vae_tiled) = self.decode_latents_reporting(&latents)?;
        Ok(GenerateOutput {
            images,
            seeds: req.seeds.clone(),
            timings: timings(started, text_done, denoised),
            vae_tiled,
            warnings: cond.warnings.clone(),
            loras: Default::default(),
        })
    }
}

/// Counts progress in the steps the user asked for, not in UNet calls: PNDM runs `steps + 1` calls and Heun
/// `2 * steps - 1`, yet `--steps 30` shows 30. Runs that start part-way (img2img) count the same share of the
/// asked steps as of the calls.
#[derive(Clone, Copy, Debug)]
pub(super) struct StepCounter {
    pub total: usize,
    calls: usize,
}

impl StepCounter {
    /// `requested` steps, a schedule of `schedule_len` calls of which this run makes `calls`.
    pub fn new(requested: usize, schedule_len: usize, calls: usize) -> Self {
        let total = if schedule_len == 0 {
            calls
        } else {
            (calls * requested)
                .div_ceil(schedule_len)
                .clamp(1, calls.max(1))
        };
        Self { total, calls }
    }

    /// The step shown after `done` of the run's calls.
    pub fn step_after(&self, done: usize) -> usize {
        (done * self.total)
            .div_ceil(self.calls.max(1))
            .min(self.total)
    }
}

pub(super) fn timings(started: Instant, text_done: Instant, denoised: Instant) -> Timings {
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    let end = Instant::now();
    Timings {
        text_encode_ms: ms(started, text_done),
        denoise_ms: ms(text_done, denoised),
        decode_ms: ms(denoised, end),
        total_ms: ms(started, end),
    }
}

/// `[batch, 3, H, W]` in [0, 1] -> RGB images, rounding like diffusers' `numpy_to_pil` (`(x * 255).round()`).
pub fn to_rgb_images(pixels: &Tensor) -> Result<Vec<RgbImage>> {
    let (batch, _, h, w) = pixels.dims4()?;
    let bytes = (pixels.to_dtype(DType::F32)? * 255.0)?
        .round()?
        .clamp(0f32, 255f32)?
        .permute((0, 2, 3, 1))?
        .to_dtype(DType::U8)?;
    let bytes = bytes
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let per = h * w * 3;
    (0..batch)
        .map(|b| {
            RgbImage::from_raw(w as u32, h as u32, bytes[b * per..(b + 1) * per].to_vec())
                .ok_or_else(|| {
                    CoreError::InvalidInput("decoded image has an unexpected size".into())
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::StepCounter;

    #[test]
    fn progress_counts_the_steps_asked_for() {
        // PNDM: 30 steps, 31 calls.
        let pndm = StepCounter::new(30, 31, 31);
        assert_eq!(pndm.total, 30);
        assert_eq!(pndm.step_after(1), 1);
        assert_eq!(pndm.step_after(31), 30);
        // Heun: 10 steps, 19 calls; img2img at half strength makes 9 of them.
        let heun = StepCounter::new(10, 19, 19);
        assert_eq!((heun.total, heun.step_after(19)), (10, 10));
        let part = StepCounter::new(10, 19, 9);
        assert_eq!((part.total, part.step_after(9)), (5, 5));
        // One call per step: unchanged.
        let euler = StepCounter::new(20, 20, 12);
        assert_eq!((euler.total, euler.step_after(3)), (12, 3));
    }
}
