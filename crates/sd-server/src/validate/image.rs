//! Input images of img2img and inpainting: base64 (or a `data:` URL) -> PNG/JPEG/WebP decode within size
//! limits (checked before any pixel is allocated) -> resized to the size the job runs at.

use crate::compat::images::{resize, ResizeMode};
use image::{DynamicImage, GrayImage, RgbImage};

use crate::error::FieldError;
use crate::validate::Limits;

/// Decodes one base64 image field (PNG, JPEG or WebP; a `data:` URL is fine) within the limits: the same
/// decoder the compatibility APIs use.
pub fn decode_image(
    field: &str,
    encoded: &str,
    limits: &Limits,
) -> Result<DynamicImage, FieldError> {
    crate::compat::images::decode_base64(field, encoded, limits)
}

/// `resize_mode`: how an input of another size becomes the output size.
pub fn resize_mode(name: Option<&str>) -> Result<ResizeMode, FieldError> {
    match name.unwrap_or("resize") {
        "resize" | "stretch" => Ok(ResizeMode::Stretch),
        "crop" => Ok(ResizeMode::CropAndResize),
        "fill" => Ok(ResizeMode::ResizeAndFill),
        other => Err(FieldError::new(
            "invalid_resize_mode",
            "resize_mode",
            format!("unknown resize_mode {other:?}; use resize, crop or fill"),
        )),
    }
}

pub fn to_rgb(
    image: &DynamicImage,
    width: u32,
    height: u32,
    mode: ResizeMode,
) -> Result<RgbImage, crate::compat::images::Oversize> {
    resize(&image.to_rgb8(), mode, width, height)
}

/// The repaint mask at the output size: white repaints (RGBA masks: transparent repaints, as OpenAI's edits
/// API defines it), edges blurred by `blur` pixels. A mask that repaints nothing is refused.
pub fn to_mask(
    image: &DynamicImage,
    width: u32,
    height: u32,
    mode: ResizeMode,
    blur: f32,
) -> Result<GrayImage, FieldError> {
    let gray = sd_core::pipeline::img2img::mask_from_image(image);
    if !gray.pixels().any(|p| p.0[0] >= 128) {
        return Err(FieldError::new(
            "empty_mask",
            "mask_image",
            "mask_image repaints nothing: paint the region to change white (or transparent in an RGBA mask)",
        ));
    }
    // Resized first, so the blur runs at the output size (not the upload's).
    let resized = resize(&gray, mode, width, height).map_err(|error| error.field("mask_image"))?;
    Ok(sd_core::pipeline::img2img::blur_mask(&resized, blur))
}
