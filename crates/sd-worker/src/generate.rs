//! `sd-worker generate`: one request from the command line, with a progress bar, written to PNG, JPEG or
//! WebP files carrying the A1111 parameters. Options are checked before the model loads.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use sd_core::pipeline::{GenerateRequest, InitImage, Pipeline, SizeConditioning, StepControl};
use sd_core::schedulers::SamplerKind;
use sd_engine::metadata::infotext::GenerationParams;
use sd_engine::metadata::{encode_image, hash_model, model_name, ImageFormat};
use sd_server::images::{self, mask_from_image, InitSource, ResizeMode};

use crate::cli::GenerateArgs;
use crate::model_options::load_options;

/// The format `--out`'s extension names (PNG without one).
pub fn output_format(out: &Path, jpeg_quality: u8) -> anyhow::Result<ImageFormat> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Ok(match ext.as_deref() {
        None | Some("png") => ImageFormat::Png,
        Some("jpg" | "jpeg") => ImageFormat::Jpeg(jpeg_quality),
        Some("webp") => ImageFormat::Webp,
        Some(other) => bail!("--out {}: `.{other}` is not an image format this writes (use .png, .jpg, .jpeg or .webp)", out.display()),
    })
}

/// The checks that need no model, so a bad option fails at once rather than after loading.
fn check_options(args: &GenerateArgs) -> anyhow::Result<()> {
    // Every Stable Diffusion VAE downscales by 8; the loaded model checks its own factor again.
    for (name, value) in [("--width", args.width), ("--height", args.height)] {
        if let Some(v) = value {
            if v == 0 || v % 8 != 0 {
                bail!("{name} {v}: width and height must be positive multiples of 8");
            }
        }
    }
    if args.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.clip_skip == 0 {
        bail!("--clip-skip must be at least 1");
    }
    if let Some(g) = args.guidance {
        if !g.is_finite() || g < 0.0 {
            bail!("--guidance must be a finite number >= 0");
        }
    }
    if let Some(s) = args.strength {
        if !(0.0..=1.0).contains(&s) {
            bail!("--strength must be within 0..=1 (got {s})");
        }
    }
    if !args.mask_blur.is_finite() || args.mask_blur < 0.0 {
        bail!("--mask-blur must be a number >= 0");
    }
    output_format(&args.out, args.jpeg_quality)?;
    Ok(())
}

/// A progress bar for hub downloads, one file at a time.
fn download_bar() -> (ProgressBar, sd_core::loader::hub::DownloadObserver) {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let observer = sd_core::loader::hub::DownloadObserver(std::sync::Arc::new(
        move |p: &sd_core::loader::hub::DownloadProgress| {
            if shown.is_hidden() {
                shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            shown.set_message(format!("downloading {}", p.file));
            shown.set_length(p.total);
            shown.set_position(p.done);
        },
    ));
    (bar, observer)
}

/// Output path of image `index`: the given name for the first, `NAME-i.EXT` for the others.
pub fn output_path(out: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = out.extension().and_then(|s| s.to_str()).unwrap_or("png");
    out.with_file_name(format!("{stem}-{index}.{ext}"))
}

/// The `--init-image` and its `--mask` as read from disk, before they are resized to the output size.
struct InitFiles {
    image: image::RgbImage,
    mask: Option<image::GrayImage>,
}

fn load_init(args: &GenerateArgs) -> anyhow::Result<Option<InitFiles>> {
    let Some(path) = &args.init_image else {
        if args.mask.is_some() {
            bail!("--mask needs --init-image");
        }
        return Ok(None);
    };
    let image = image::open(path)
        .with_context(|| format!("cannot read --init-image {}", path.display()))?
        .to_rgb8();
    let mask = match &args.mask {
        Some(m) => {
            Some(mask_from_image(&image::open(m).with_context(|| {
                format!("cannot read --mask {}", m.display())
            })?))
        }
        None => None,
    };
    Ok(Some(InitFiles { image, mask }))
}

/// The init image and mask at the output size, through the server's image path (stretched, as the native
/// API's default `resize_mode`; the mask blurred at the output size).
fn init_image(
    files: InitFiles,
    args: &GenerateArgs,
    width: usize,
    height: usize,
) -> anyhow::Result<InitImage> {
    images::init_image(InitSource {
        image: files.image,
        mask: files.mask,
        width: width as u32,
        height: height as u32,
        mode: ResizeMode::Stretch,
        mask_blur: args.mask_blur,
        strength: args.strength,
        preserve_unmasked: args.preserve_unmasked,
        image_field: "--init-image",
        mask_field: "--mask",
    })
    .map_err(|error| anyhow::anyhow!("{}", error.message))
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    check_options(&args)?;
    let format = output_format(&args.out, args.jpeg_quality)?;
    let mut options = load_options(&args.model)?;
    let (download, observer) = download_bar();
    options.hub.progress = Some(observer);
    let sampler = args
        .sampler
        .as_deref()
        .map(SamplerKind::parse)
        .transpose()?;
    let init = load_init(&args)?;
    let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", args.model.model));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let pipeline = Pipeline::load(&args.model.model, &options);
    download.finish_and_clear();
    spinner.finish_and_clear();
    let mut pipeline = pipeline?;
    pipeline.set_lora_library(sd_core::adapters::LoraLibrary::new(
        args.model.lora_dir.clone(),
    ));
    let info = pipeline.info().clone();
    let (mut width, mut height) = (
        args.width.unwrap_or(info.default_width),
        args.height.unwrap_or(info.default_height),
    );
    if let (Some(init), None, None) = (&init, args.width, args.height) {
        // Without an explicit size, img2img keeps the input's size, rounded down to what the VAE accepts.
        let m = info.size_multiple;
        width = (init.image.width() as usize / m).max(1) * m;
        height = (init.image.height() as usize / m).max(1) * m;
    }
    let seed = args.seed.unwrap_or_else(rand_seed);
    let request = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        steps: args.steps.unwrap_or(info.default_steps),
        guidance_scale: args.guidance.unwrap_or(info.default_guidance),
        width,
        height,
        sampler,
        seeds: (0..args.batch as u64)
            .map(|i| seed.wrapping_add(i))
            .collect(),
        clip_skip: args.clip_skip,
        init: init
            .map(|files| init_image(files, &args, width, height))
            .transpose()?,
        // diffusers takes (height, width) pairs; users write WxH.
        size_conditioning: SizeConditioning {
            original_size: args.original_size.map(|(w, h)| (h, w)),
            crop_top_left: args.crop_top_left.map(|(x, y)| (y, x)).unwrap_or((0, 0)),
            target_size: args.target_size.map(|(w, h)| (h, w)),
            negative_original_size: args.negative_original_size.map(|(w, h)| (h, w)),
            negative_target_size: args.negative_target_size.map(|(w, h)| (h, w)),
        },
        prompt_syntax: args.model.prompt_syntax,
    };
    let bar = ProgressBar::new(request.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("denoising");
    let output = pipeline.generate(&request, &mut |event| {
        bar.set_length(event.total as u64);
        bar.set_position(event.step as u64);
        StepControl::Continue
    })?;
    bar.finish_and_clear();
    for warning in &output.warnings {
        tracing::warn!("{warning}");
    }
    // Every PNG carries A1111's `parameters` text, so A1111, ComfyUI or any reader recovers the settings.
    let model_hash = hash_model(
        &args.model.model,
        args.model.variant.as_deref(),
        &options.hub,
    );
    let used_sampler = sampler.unwrap_or(info.default_sampler);
    for (i, image) in output.images.iter().enumerate() {
        let mut params = GenerationParams {
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            steps: request.steps,
            sampler: used_sampler,
            cfg_scale: request.guidance_scale,
            seed: output.seeds[i],
            width: image.width() as usize,
            height: image.height() as usize,
            model_hash: model_hash.as_ref().map(|h| h.short().to_string()),
            model_name: Some(model_name(&args.model.model)),
            denoising_strength: request.init.as_ref().map(|init| init.strength),
            clip_skip: request.clip_skip,
            extra: if output.vae_tiled {
                vec![sd_engine::metadata::vae_tiled_param()]
            } else {
                Vec::new()
            },
            version: Some(format!("sd-worker {}", env!("CARGO_PKG_VERSION"))),
        };
        sd_engine::metadata::lora_hash::add_lora_hashes(&mut params, &output.loras);
        let bytes = encode_image(image, format, Some(&params.to_infotext().to_text()))?;
        let path = output_path(&args.out, i);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(path = %path.display(), seed = output.seeds[i], "wrote image");
    }
    tracing::info!(
        total_ms = output.timings.total_ms,
        denoise_ms = output.timings.denoise_ms,
        decode_ms = output.timings.decode_ms,
        "done"
    );
    Ok(())
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    // Keep seeds within 32 bits, as A1111 and most UIs show them.
    h.finish() & 0xffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_outputs_get_numbered_names() {
        assert_eq!(
            output_path(Path::new("a/cat.png"), 0),
            PathBuf::from("a/cat.png")
        );
        assert_eq!(
            output_path(Path::new("a/cat.png"), 2),
            PathBuf::from("a/cat-2.png")
        );
    }
}
