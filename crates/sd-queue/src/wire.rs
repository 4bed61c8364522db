//! The job payload as it travels through Redis: a validated [`JobRequest`] as JSON, with input images as
//! lossless PNG (base64) so that a worker runs exactly the request the gateway validated. The conversion
//! destructures every field, so a new request field fails to compile here until it travels too.

use base64::Engine as _;
use image::ImageFormat;
use sd_core::pipeline::{GenerateRequest, InitImage, SizeConditioning};
use sd_core::prompt::PromptSyntax;
use sd_core::schedulers::SamplerKind;
use sd_engine::{JobRequest, Operation};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("job payload is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("job payload has a bad {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

#[derive(Serialize, Deserialize)]
struct WireRequest {
    operation: Operation,
    prompt: String,
    negative_prompt: String,
    steps: usize,
    guidance_scale: f64,
    width: usize,
    height: usize,
    sampler: Option<String>,
    seeds: Vec<u64>,
    clip_skip: usize,
    init: Option<WireInit>,
    size_conditioning: WireSize,
    prompt_syntax: String,
}

#[derive(Serialize, Deserialize)]
struct WireInit {
    /// Base64 PNG.
    image: String,
    strength: f64,
    mask: Option<String>,
    preserve_unmasked: bool,
}

#[derive(Serialize, Deserialize)]
struct WireSize {
    original_size: Option<(usize, usize)>,
    crop_top_left: (usize, usize),
    target_size: Option<(usize, usize)>,
    negative_original_size: Option<(usize, usize)>,
    negative_target_size: Option<(usize, usize)>,
}

/// The request as the JSON a worker reads back with [`decode_request`].
pub fn encode_request(request: &JobRequest) -> Result<String, WireError> {
    let GenerateRequest {
        prompt,
        negative_prompt,
        steps,
        guidance_scale,
        width,
        height,
        sampler,
        seeds,
        clip_skip,
        init,
        size_conditioning,
        prompt_syntax,
    } = &request.generate;
    let SizeConditioning {
        original_size,
        crop_top_left,
        target_size,
        negative_original_size,
        negative_target_size,
    } = size_conditioning;
    let init = match init {
        Some(InitImage {
            image,
            strength,
            mask,
            preserve_unmasked,
        }) => Some(WireInit {
            image: png_base64(|out| image.write_to(out, ImageFormat::Png))?,
            strength: *strength,
            mask: match mask {
                Some(mask) => Some(png_base64(|out| mask.write_to(out, ImageFormat::Png))?),
                None => None,
            },
            preserve_unmasked: *preserve_unmasked,
        }),
        None => None,
    };
    let wire = WireRequest {
        operation: request.operation,
        prompt: prompt.clone(),
        negative_prompt: negative_prompt.clone(),
        steps: *steps,
        guidance_scale: *guidance_scale,
        width: *width,
        height: *height,
        sampler: sampler.map(|kind| kind.name().to_owned()),
        seeds: seeds.clone(),
        clip_skip: *clip_skip,
        init,
        size_conditioning: WireSize {
            original_size: *original_size,
            crop_top_left: *crop_top_left,
            target_size: *target_size,
            negative_original_size: *negative_original_size,
            negative_target_size: *negative_target_size,
        },
        prompt_syntax: prompt_syntax.name().to_owned(),
    };
    Ok(serde_json::to_string(&wire)?)
}

pub fn decode_request(json: &str) -> Result<JobRequest, WireError> {
    let wire: WireRequest = serde_json::from_str(json)?;
    let sampler = match wire.sampler {
        Some(name) => Some(SamplerKind::parse(&name).map_err(|error| WireError::Field {
            field: "sampler",
            reason: error.to_string(),
        })?),
        None => None,
    };
    let init = match wire.init {
        Some(init) => Some(InitImage {
            image: decode_png(&init.image, "init image")?.to_rgb8(),
            strength: init.strength,
            mask: match init.mask {
                Some(mask) => Some(decode_png(&mask, "mask")?.to_luma8()),
                None => None,
            },
            preserve_unmasked: init.preserve_unmasked,
        }),
        None => None,
    };
    let prompt_syntax =
        PromptSyntax::parse(&wire.prompt_syntax).map_err(|error| WireError::Field {
            field: "prompt_syntax",
            reason: error.to_string(),
        })?;
    Ok(JobRequest {
        operation: wire.operation,
        generate: GenerateRequest {
            prompt: wire.prompt,
            negative_prompt: wire.negative_prompt,
            steps: wire.steps,
            guidance_scale: wire.guidance_scale,
            width: wire.width,
            height: wire.height,
            sampler,
            seeds: wire.seeds,
            clip_skip: wire.clip_skip,
            init,
            size_conditioning: SizeConditioning {
                original_size: wire.size_conditioning.original_size,
                crop_top_left: wire.size_conditioning.crop_top_left,
                target_size: wire.size_conditioning.target_size,
                negative_original_size: wire.size_conditioning.negative_original_size,
                negative_target_size: wire.size_conditioning.negative_target_size,
            },
            prompt_syntax,
        },
    })
}

fn png_base64(
    write: impl FnOnce(&mut std::io::Cursor<Vec<u8>>) -> image::ImageResult<()>,
) -> Result<String, WireError> {
    let mut out = std::io::Cursor::new(Vec::new());
    write(&mut out).map_err(|error| WireError::Field {
        field: "image",
        reason: error.to_string(),
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(out.into_inner()))
}

fn decode_png(text: &str, field: &'static str) -> Result<image::DynamicImage, WireError> {
    let bad = |reason: String| WireError::Field { field, reason };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| bad(error.to_string()))?;
    image::load_from_memory_with_format(&bytes, ImageFormat::Png)
        .map_err(|error| bad(error.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use image::{GrayImage, RgbImage};

    #[test]
    fn a_request_with_images_survives_the_trip() {
        let mut image = RgbImage::new(8, 4);
        image.put_pixel(3, 2, image::Rgb([1, 2, 3]));
        let mut mask = GrayImage::new(8, 4);
        mask.put_pixel(1, 1, image::Luma([200]));
        let request = JobRequest {
            operation: Operation::ImageInpaint,
            generate: GenerateRequest {
                prompt: "a (cat:1.2)".into(),
                negative_prompt: "dog".into(),
                steps: 7,
                guidance_scale: 6.5,
                width: 64,
                height: 32,
                sampler: Some(SamplerKind::DpmPp2MKarras),
                seeds: vec![1, 2],
                clip_skip: 2,
                init: Some(InitImage {
                    image: image.clone(),
                    strength: 0.75,
                    mask: Some(mask.clone()),
                    preserve_unmasked: true,
                }),
                size_conditioning: SizeConditioning {
                    original_size: Some((10, 20)),
                    crop_top_left: (1, 2),
                    target_size: None,
                    negative_original_size: None,
                    negative_target_size: Some((3, 4)),
                },
                prompt_syntax: PromptSyntax::Plain,
            },
        };
        let back = decode_request(&encode_request(&request).unwrap()).unwrap();
        assert_eq!(back.operation, request.operation);
        let (a, b) = (&back.generate, &request.generate);
        assert_eq!(a.prompt, b.prompt);
        assert_eq!(a.sampler, b.sampler);
        assert_eq!(a.seeds, b.seeds);
        assert_eq!(a.size_conditioning, b.size_conditioning);
        assert_eq!(a.prompt_syntax, b.prompt_syntax);
        let init = a.init.as_ref().unwrap();
        assert_eq!(init.image, image);
        assert_eq!(init.mask.as_ref().unwrap(), &mask);
        assert!(init.preserve_unmasked);
    }
}
