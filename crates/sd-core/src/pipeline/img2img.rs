//! Starting from a picture: image-to-image (diffusers' StableDiffusionImg2ImgPipeline) and inpainting
//! (StableDiffusionInpaintPipeline), both with 9-channel inpainting UNets and by blending the known region back
//! after every step with ordinary UNets. Random draws follow diffusers' order, so seeds reproduce its images.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::{GrayImage, RgbImage};

use super::denoise::timings;
use super::{GenerateOutput, GenerateRequest, InitImage, Pipeline, StepControl, StepEvent};
use crate::rng::BatchRng;
use crate::{CoreError, Result};

/// RGB pixels (already `width` x `height`) -> `[1, 3, H, W]` in [-1, 1].
pub fn image_to_tensor(
    image: &RgbImage,
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor> {
    check_size("init image", image.dimensions(), width, height)?;
    let data: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&v| v as f32 / 255.0 * 2.0 - 1.0)
        .collect();
    Ok(Tensor::from_vec(data, (1, height, width, 3), device)?
        .permute((0, 3, 1, 2))?
        .contiguous()?)
}

/// Mask (already `width` x `height`) -> `[1, 1, H, W]` of 0/1 (white >= 0.5 repaints).
pub fn mask_to_tensor(
    mask: &GrayImage,
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor> {
    check_size("mask", mask.dimensions(), width, height)?;
    let data: Vec<f32> = mask
        .as_raw()
        .iter()
        .map(|&v| if v as f32 / 255.0 < 0.5 { 0.0 } else { 1.0 })
        .collect();
    Ok(Tensor::from_vec(data, (1, 1, height, width), device)?)
}

/// Input images arrive at the output size (the server and the CLI resize them); anything else is a caller's
/// mistake, refused rather than silently resampled.
fn check_size(what: &str, (w, h): (u32, u32), width: usize, height: usize) -> Result<()> {
    if (w as usize, h as usize) != (width, height) {
        return Err(CoreError::InvalidInput(format!(
            "the {what} is {w}x{h} but the request is {width}x{height}; resize it to the output size first"
        )));
    }
    Ok(())
}

/// Nearest-neighbour downscale by an integer factor, like `F.interpolate(mask, size=(h/f, w/f))`.
fn downscale_nearest(mask: &Tensor, factor: usize) -> Result<Tensor> {
    let (b, c, h, w) = mask.dims4()?;
    Ok(mask
        .reshape((b, c, h / factor, factor, w / factor, factor))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((b, c, h / factor, w / factor))?)
}

/// diffusers' `get_timesteps`: how many of the scheduler's steps `strength` keeps, and where they begin.
pub fn strength_start(steps: usize, strength: f64) -> usize {
    let init_timestep = ((steps as f64 * strength) as usize).min(steps);
    steps - init_timestep
}

impl Pipeline {
    /// `latent_dist.sample(generator) * scaling_factor`. With `first_only`, generator 0 alone draws (diffusers'
    /// inpainting encodes its single input image with `generator[0]`); otherwise image i uses generator i.
    fn encode_image(
        &self,
        pixels: &Tensor,
        rng: &mut BatchRng,
        first_only: bool,
    ) -> Result<Tensor> {
        let pixels = pixels.to_dtype(self.vae_dtype)?;
        let (batch, _, h, w) = pixels.dims4()?;
        let tile = self.vae.config().tile_geometry().sample;
        let plan = self.vae_plan(h > tile || w > tile, batch, h, w);
        let (dist, _) = self.run_planned(
            plan,
            || self.vae.encode(&pixels),
            || self.vae.encode_tiled(&pixels),
        )?;
        let noise = if first_only {
            rng.randn_first(dist.mean.dims(), &self.device, dist.mean.dtype())?
        } else {
            rng.randn(dist.mean.dims(), &self.device, dist.mean.dtype())?
        };
        let sample = (&dist.mean + (&dist.std * noise)?)?;
        Ok((sample * self.vae.config().scaling_factor)?.to_dtype(self.dtype)?)
    }

    pub(super) fn generate_from_image(
        &self,
        req: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<GenerateOutput> {
        let Some(init) = &req.init else {
            return Err(CoreError::InvalidInput("no init image".into()));
        };
        if !(0.0..=1.0).contains(&init.strength) {
            return Err(CoreError::InvalidInput(format!(
                "strength must be within [0, 1] (got {})",
                init.strength
            )));
        }
        check_size("init image", init.image.dimensions(), req.width, req.height)?;
        if let Some(mask) = &init.mask {
            check_size("mask", mask.dimensions(), req.width, req.height)?;
        }
        let started = Instant::now();
        let cond = self.conditioning(req)?;
        let text_done = Instant::now();
        let latents = match &init.mask {
            None => self.img2img(req, init, &cond, on_step)?,
            Some(mask) => self.inpaint(req, init, mask, &cond, on_step)?,
        };
        let denoised = Instant::now();
        let (mut images, vae_tiled) = self.decode_latents_reporting(&latents)?;
        if let (Some(mask), true) = (&init.mask, init.preserve_unmasked) {
            for img in &mut images {
                overlay_unmasked(img, &init.image, mask);
            }
        }
        Ok(GenerateOutput {
            images,
            seeds: req.seeds.clone(),
            timings: timings(started, text_done, denoised),
            vae_tiled,
            warnings: cond.warnings.clone(),
            loras: Default::default(),
        })
    }

    fn img2img(
        &self,
        req: &GenerateRequest,
        init: &InitImage,
        cond: &super::conditioning::CondSchedule,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<Tensor> {
        let batch = req.seeds.len();
        let mut rng = BatchRng::from_seeds(&req.seeds);
        let mut scheduler = self.scheduler_for(req)?;
        let order = scheduler.order();
        let begin = strength_start(req.steps, init.strength) * order;
        let pixels = image_to_tensor(&init.image, req.width, req.height, &self.device)?;
        let pixels = Tensor::cat(&vec![&pixels; batch], 0)?;
        let image_latents = self.encode_image(&pixels, &mut rng, false)?;
        if begin >= scheduler.timesteps().len() {
            // strength 0: nothing to denoise, the (re-encoded) input comes back.
            return Ok(image_latents);
        }
        scheduler.set_begin_index(begin);
        let noise = rng.randn(image_latents.dims(), &self.device, self.dtype)?;
        let latents = scheduler.add_noise(&image_latents, &noise, begin)?;
        self.denoise(
            scheduler.as_mut(),
            latents,
            cond,
            req,
            &mut rng,
            None,
            &mut |_, l| Ok(l),
            on_step,
        )
    }

    fn inpaint(
        &self,
        req: &GenerateRequest,
        init: &InitImage,
        mask: &GrayImage,
        cond: &super::conditioning::CondSchedule,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> StepControl,
    ) -> Result<Tensor> {
        let batch = req.seeds.len();
        let unet_channels = self.unet.config().in_channels;
        let latent_channels = self.vae.config().latent_channels;
        let nine_channel = unet_channels == 2 * latent_channels + 1;
        if !nine_channel && unet_channels != latent_channels {
            return Err(CoreError::Unsupported(format!(
                "UNet with {unet_channels} input channels cannot inpaint"
            )));
        }
        let mut rng = BatchRng::from_seeds(&req.seeds);
        let mut scheduler = self.scheduler_for(req)?;
        let order = scheduler.order();
        let begin = strength_start(req.steps, init.strength) * order;
        if begin >= scheduler.timesteps().len() {
            return Err(CoreError::InvalidInput(format!(
                "strength {} leaves no denoising steps out of {}; raise strength or steps",
                init.strength, req.steps
            )));
        }
        scheduler.set_begin_index(begin);
        let strength_max = init.strength >= 1.0;
        let pixels = image_to_tensor(&init.image, req.width, req.height, &self.device)?;
        let pixel_mask = mask_to_tensor(mask, req.width, req.height, &self.device)?;
        let m = self.info.size_multiple;
        let shape = [batch, latent_channels, req.height / m, req.width / m];

        // Draw order as diffusers: image latents (generator 0 only), the noise (every generator), then the
        // masked-image latents (generator 0 only).
        let image_latents = if !nine_channel || !strength_max {
            let first = self.encode_image(&pixels, &mut rng, true)?;
            Some(Tensor::cat(&vec![&first; batch], 0)?)
        } else {
            None
        };
        let noise = rng.randn(&shape, &self.device, self.dtype)?;
        let latents = match (&image_latents, strength_max) {
            (Some(img), false) => scheduler.add_noise(img, &noise, begin)?,
            _ => (&noise * scheduler.init_noise_sigma())?,
        };
        let latent_mask = downscale_nearest(&pixel_mask, m)?.to_dtype(self.dtype)?;
        let latent_mask = Tensor::cat(&vec![&latent_mask; batch], 0)?;
        let keep = pixel_mask.lt(0.5f32)?.to_dtype(DType::F32)?;
        let masked_pixels = pixels.broadcast_mul(&keep)?;
        let masked_latents = self.encode_image(&masked_pixels, &mut rng, true)?;
        let masked_latents = Tensor::cat(&vec![&masked_latents; batch], 0)?;

        if nine_channel {
            let extra = Tensor::cat(&[&latent_mask, &masked_latents], 1)?;
            return self.denoise(
                scheduler.as_mut(),
                latents,
                cond,
                req,
                &mut rng,
                Some(&extra),
                &mut |_, l| Ok(l),
                on_step,
            );
        }
        let Some(image_latents) = image_latents else {
            return Err(CoreError::InvalidInput(
                "inpainting needs the image latents".into(),
            ));
        };
        let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
        let noise_for_blend = noise.clone();
        let renoise = crate::schedulers::build_scheduler(
            req.sampler.unwrap_or(self.default_sampler),
            &self.scheduler_config,
            req.steps,
        )?;
        let inverse = (1.0 - &latent_mask)?;
        let mut blend = |i: usize, latents: Tensor| -> Result<Tensor> {
            let known = if i + 1 < timesteps.len() {
                renoise.add_noise(&image_latents, &noise_for_blend, i + 1)?
            } else {
                image_latents.clone()
            };
            Ok((inverse.broadcast_mul(&known)? + latent_mask.broadcast_mul(&latents)?)?)
        };
        self.denoise(
            scheduler.as_mut(),
            latents,
            cond,
            req,
            &mut rng,
            None,
            &mut blend,
            on_step,
        )
    }
}

/// A1111's "inpaint only masked" overlay: unmasked pixels come back exactly as the input had them, blended
/// through the (possibly blurred) mask at its edges.
pub fn overlay_unmasked(output: &mut RgbImage, original: &RgbImage, mask: &GrayImage) {
    for ((out, orig), m) in output
        .pixels_mut()
        .zip(original.pixels())
        .zip(mask.pixels())
    {
        let alpha = m.0[0] as f32 / 255.0;
        for c in 0..3 {
            out.0[c] = (orig.0[c] as f32 * (1.0 - alpha) + out.0[c] as f32 * alpha).round() as u8;
        }
    }
}
