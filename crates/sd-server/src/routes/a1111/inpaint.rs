//! A1111's img2img input handling: `init_images` resized by `resize_mode`, and for inpainting the `mask`
//! (binary, inverted by `inpainting_mask_invert`, blurred by `mask_blur`), `inpainting_fill` 0 ("fill") and
//! `inpaint_full_res` ("only masked": the masked area, grown by `inpaint_full_res_padding` to the output's
//! aspect, is cropped, inpainted at full size and pasted back into the original picture).
//!
//! With "whole picture" the core pastes the unmasked pixels back (`preserve_unmasked`); with "only masked"
//! we paste the result back ourselves, blending with the blurred mask as A1111 does.

use image::{DynamicImage, GrayImage, Rgb, RgbImage};
use sd_core::pipeline::{GenerateRequest, InitImage};
use sd_engine::metadata;
use sd_engine::Operation;
use serde_json::Value;

use super::fields::{self, Body};
use super::masked;
use crate::error::FieldError;
use crate::images::{self, InitSource, ResizeMode};
use crate::validate::Limits;

/// How to put an "only masked" result back.
#[derive(Clone, Debug)]
pub struct PasteBack {
    pub original: RgbImage,
    /// (x1, y1, x2, y2) in the original.
    pub region: (u32, u32, u32, u32),
    /// Blurred mask at the original's size (white = repainted).
    pub mask: GrayImage,
}

pub struct Prepared {
    pub operation: Operation,
    pub init: InitImage,
    pub paste_back: Option<PasteBack>,
    pub extra: Vec<(String, Value)>,
    pub strength: f64,
}

/// A1111 flattens transparent inputs onto white (`img2img_background_color`).
fn flatten(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let alpha = f32::from(a) / 255.0;
        let over = |channel: u8| (f32::from(channel) * alpha + 255.0 * (1.0 - alpha)).round() as u8;
        Rgb([over(r), over(g), over(b)])
    })
}

pub fn prepare(
    body: &Body,
    request: &GenerateRequest,
    limits: &Limits,
) -> Result<Prepared, FieldError> {
    let init_images = fields::strings(body, "init_images")?;
    let encoded = match init_images.as_slice() {
        [] => {
            return Err(FieldError::new(
                "missing_field",
                "init_images",
                "init_images is required for img2img",
            ))
        }
        [one] => one,
        _ => {
            return Err(FieldError::new(
                "unsupported_field",
                "init_images",
                "only one init image is supported",
            ))
        }
    };
    let strength = fields::float(body, "denoising_strength")?.unwrap_or(0.75);
    if !(0.0..=1.0).contains(&strength) {
        return Err(FieldError::new(
            "invalid_strength",
            "denoising_strength",
            "denoising_strength must be between 0 and 1",
        ));
    }
    let resize_mode = fields::int(body, "resize_mode")?.unwrap_or(0);
    let mode = ResizeMode::from_a1111(resize_mode).ok_or_else(|| {
        FieldError::new(
            "invalid_value",
            "resize_mode",
            format!("resize_mode must be 0, 1, 2 or 3, got {resize_mode}"),
        )
    })?;
    let original = flatten(&images::decode_base64("init_images", encoded, limits)?);
    let (width, height) = (request.width as u32, request.height as u32);
    let mask = match fields::string(body, "mask")? {
        Some(text) if !text.trim().is_empty() => {
            Some(images::decode_base64("mask", &text, limits)?)
        }
        _ => None,
    };
    let Some(mask) = mask else {
        return Ok(Prepared {
            operation: Operation::ImageTransform,
            init: images::init_image(InitSource {
                image: original,
                mask: None,
                width,
                height,
                mode,
                mask_blur: 0.0,
                strength: Some(strength),
                preserve_unmasked: false,
                image_field: "init_images",
                mask_field: "mask",
            })?,
            paste_back: None,
            extra: Vec::new(),
            strength,
        });
    };

    let mut mask = images::a1111_mask(&mask);
    if mask.dimensions() != original.dimensions() {
        let (width, height) = original.dimensions();
        mask = images::resize(&mask, ResizeMode::Stretch, width, height)
            .map_err(|error| error.field("mask"))?;
    }
    if fields::int(body, "inpainting_mask_invert")?.unwrap_or(0) != 0 {
        images::invert(&mut mask);
    }
    // As the native API: a mask that repaints nothing is a mistake, not a no-op job.
    if !mask.pixels().any(|pixel| pixel.0[0] > 0) {
        return Err(FieldError::new(
            "empty_mask",
            "mask",
            "mask repaints nothing (it is all black after inpainting_mask_invert): paint the region to \
             change white",
        ));
    }
    let blur = match fields::int(body, "mask_blur")? {
        Some(blur) => blur,
        None => fields::int(body, "mask_blur_x")?.unwrap_or(4),
    };
    if !(0..=64).contains(&blur) {
        return Err(FieldError::new(
            "invalid_value",
            "mask_blur",
            format!("mask_blur must be between 0 and 64, got {blur}"),
        ));
    }
    let sharp = mask;
    let fill = fields::int(body, "inpainting_fill")?.unwrap_or(0) == 0;
    let only_masked = fields::boolean(body, "inpaint_full_res")?.unwrap_or(true);
    let padding = fields::int(body, "inpaint_full_res_padding")?.unwrap_or(0);
    let padding = u32::try_from(padding).map_err(|_| {
        FieldError::new(
            "invalid_value",
            "inpaint_full_res_padding",
            "inpaint_full_res_padding must not be negative",
        )
    })?;

    let mut extra: Vec<(String, Value)> = vec![("Mask blur".into(), Value::from(blur))];
    // "Only masked" needs the blurred mask at the original's size (its bounds pick the crop, and it blends
    // the paste-back); "whole picture" blurs at the output size, which is bounded, not at the upload's.
    let mask = if only_masked {
        images::blur_mask(&sharp, blur as f32)
    } else {
        sharp
    };
    let region = only_masked
        .then(|| masked::crop_region(&mask, padding))
        .flatten()
        .map(|region| masked::expand_crop_region(region, (width, height), original.dimensions()));
    let source = |image, mask, mode, mask_blur| InitSource {
        image,
        mask: Some(mask),
        width,
        height,
        mode,
        mask_blur,
        strength: Some(strength),
        preserve_unmasked: false,
        image_field: "init_images",
        mask_field: "mask",
    };
    let (mut init, paste_back) = match region {
        Some(region @ (x1, y1, x2, y2)) => {
            let crop = |w: u32, h: u32| (x1, y1, (x2 - x1).max(1).min(w), (y2 - y1).max(1).min(h));
            let (cx, cy, cw, ch) = crop(original.width(), original.height());
            let cropped = image::imageops::crop_imm(&original, cx, cy, cw, ch).to_image();
            let cropped_mask = image::imageops::crop_imm(&mask, cx, cy, cw, ch).to_image();
            // The result is scaled back to the region after generation: refuse now what could not be.
            images::check_resize(
                (width, height),
                ResizeMode::CropAndResize,
                (x2 - x1, y2 - y1),
            )
            .map_err(|error| error.field("mask"))?;
            extra.push(("Inpaint area".into(), Value::from("Only masked")));
            extra.push(("Masked area padding".into(), Value::from(padding)));
            // The mask was blurred at the original's size already.
            let init = images::init_image(source(
                cropped,
                cropped_mask,
                ResizeMode::ResizeAndFill,
                0.0,
            ))?;
            let paste = PasteBack {
                original,
                region,
                mask,
            };
            (init, Some(paste))
        }
        None => {
            let mut init = images::init_image(source(original, mask, mode, blur as f32))?;
            // With "whole picture" the core pastes the unmasked pixels back.
            init.preserve_unmasked = true;
            (init, None)
        }
    };
    if fill {
        if let Some(mask) = &init.mask {
            init.image = masked::fill_masked(&init.image, mask);
        }
    }
    Ok(Prepared {
        operation: Operation::ImageInpaint,
        init,
        paste_back,
        extra,
        strength,
    })
}

/// Pastes an "only masked" result back into the original and re-encodes it with `infotext`.
pub fn paste_back(png: &[u8], paste: &PasteBack, infotext: &str) -> Result<Vec<u8>, String> {
    let generated = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|error| format!("cannot decode the generated PNG: {error}"))?
        .to_rgb8();
    let merged = masked::paste_back(&paste.original, &generated, paste.region, &paste.mask)
        .map_err(|error| error.field("mask").message)?;
    metadata::encode_png(&merged, Some(infotext)).map_err(|error| error.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;
    use image::Luma;
    use serde_json::json;

    use super::*;

    fn b64(image: DynamicImage) -> String {
        let mut out = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    fn request(width: usize, height: usize) -> GenerateRequest {
        GenerateRequest {
            prompt: "x".into(),
            negative_prompt: String::new(),
            steps: 2,
            guidance_scale: 7.0,
            width,
            height,
            sampler: None,
            seeds: vec![1],
            clip_skip: 1,
            init: None,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        }
    }

    fn body(value: Value) -> Body {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn img2img_without_mask_resizes_the_input() {
        let picture = b64(DynamicImage::ImageRgb8(RgbImage::new(100, 50)));
        let prepared = prepare(
            &body(json!({"init_images": [picture], "denoising_strength": 0.5, "resize_mode": 1})),
            &request(64, 64),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(prepared.operation, Operation::ImageTransform);
        assert_eq!(prepared.init.image.dimensions(), (64, 64));
        assert_eq!(prepared.init.strength, 0.5);
        assert!(prepared.paste_back.is_none());
    }

    #[test]
    fn only_masked_crops_around_the_mask_and_whole_picture_does_not() {
        let picture = b64(DynamicImage::ImageRgb8(RgbImage::from_pixel(
            200,
            100,
            Rgb([9, 9, 9]),
        )));
        let mut mask = GrayImage::new(200, 100);
        for x in 150..170 {
            for y in 40..60 {
                mask.put_pixel(x, y, Luma([255]));
            }
        }
        let mask = b64(DynamicImage::ImageLuma8(mask));
        let base =
            json!({"init_images": [picture], "mask": mask, "mask_blur": 0, "inpainting_fill": 1});
        let prepared = prepare(&body(base.clone()), &request(64, 64), &Limits::default()).unwrap();
        assert_eq!(prepared.operation, Operation::ImageInpaint);
        let paste = prepared.paste_back.unwrap();
        assert_eq!(paste.region, (150, 40, 170, 60));
        assert_eq!(prepared.init.mask.as_ref().unwrap().dimensions(), (64, 64));
        assert!(!prepared.init.preserve_unmasked);
        assert!(prepared.extra.iter().any(|(key, _)| key == "Inpaint area"));

        let mut whole = base;
        whole["inpaint_full_res"] = json!(false);
        let prepared = prepare(&body(whole), &request(64, 64), &Limits::default()).unwrap();
        assert!(prepared.paste_back.is_none());
        assert!(prepared.init.preserve_unmasked);
        assert_eq!(
            prepared.extra,
            vec![("Mask blur".to_owned(), Value::from(0))]
        );
    }

    #[test]
    fn whole_picture_blurs_the_mask_at_the_output_size() {
        let picture = b64(DynamicImage::ImageRgb8(RgbImage::new(256, 256)));
        let mut sharp = GrayImage::new(256, 256);
        for x in 0..128 {
            for y in 0..256 {
                sharp.put_pixel(x, y, Luma([255]));
            }
        }
        let body = body(
            json!({"init_images": [picture], "mask": b64(DynamicImage::ImageLuma8(sharp.clone())),
            "mask_blur": 4, "inpaint_full_res": false}),
        );
        let prepared = prepare(&body, &request(64, 64), &Limits::default()).unwrap();
        let expected = images::blur_mask(
            &images::resize(&sharp, ResizeMode::Stretch, 64, 64).unwrap(),
            4.0,
        );
        assert_eq!(prepared.init.mask.unwrap(), expected);
    }

    #[test]
    fn extreme_aspect_crops_and_black_masks_are_refused() {
        let limits = Limits::default();
        let tall = b64(DynamicImage::ImageRgb8(RgbImage::new(1, 4096)));
        let error = prepare(
            &body(json!({"init_images": [tall], "resize_mode": 1})),
            &request(2048, 64),
            &limits,
        )
        .err()
        .unwrap();
        assert_eq!(error.code, "image_too_large");
        assert_eq!(error.field.as_deref(), Some("init_images"));
        let picture = b64(DynamicImage::ImageRgb8(RgbImage::new(64, 64)));
        let black = b64(DynamicImage::ImageLuma8(GrayImage::new(64, 64)));
        let error = prepare(
            &body(json!({"init_images": [picture], "mask": black})),
            &request(64, 64),
            &limits,
        )
        .err()
        .unwrap();
        assert_eq!(error.code, "empty_mask");
    }

    #[test]
    fn bad_inputs_are_named() {
        let limits = Limits::default();
        let missing = prepare(&body(json!({})), &request(64, 64), &limits)
            .err()
            .unwrap();
        assert_eq!(missing.field.as_deref(), Some("init_images"));
        let picture = b64(DynamicImage::ImageRgb8(RgbImage::new(8, 8)));
        let strength = prepare(
            &body(json!({"init_images": [picture.clone()], "denoising_strength": 1.5})),
            &request(64, 64),
            &limits,
        )
        .err()
        .unwrap();
        assert_eq!(strength.field.as_deref(), Some("denoising_strength"));
        let mode = prepare(
            &body(json!({"init_images": [picture], "resize_mode": 7})),
            &request(64, 64),
            &limits,
        )
        .err()
        .unwrap();
        assert_eq!(mode.field.as_deref(), Some("resize_mode"));
    }
}
