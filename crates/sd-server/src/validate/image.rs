//! Input images of img2img and inpainting: base64 (or a `data:` URL) -> PNG/JPEG/WebP decode within size
//! limits (checked before any pixel is allocated) -> resized to the size the job runs at.

use std::io::Cursor;

use crate::compat::images::{resize, ResizeMode};
use base64::Engine as _;
use image::{DynamicImage, GrayImage, ImageReader, RgbImage};

use crate::error::FieldError;
use crate::validate::Limits;

/// Decodes one base64 image field.
pub fn decode_image(
    field: &str,
    encoded: &str,
    limits: &Limits,
) -> Result<DynamicImage, FieldError> {
    let payload = strip_data_url(encoded.trim());
    if payload.is_empty() {
        return Err(FieldError::new(
            "missing_field",
            field,
            format!("{field} is empty"),
        ));
    }
    if payload.len() / 4 * 3 > limits.max_image_bytes {
        return Err(FieldError::new(
            "image_too_large",
            field,
            format!("{field} is larger than {} bytes", limits.max_image_bytes),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.as_bytes())
        .map_err(|error| {
            FieldError::new(
                "invalid_base64",
                field,
                format!("{field} is not valid base64: {error}"),
            )
        })?;
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| FieldError::new("invalid_image", field, format!("{field}: {error}")))?;
    if reader.format().is_none() {
        return Err(FieldError::new(
            "invalid_image",
            field,
            format!("{field} is not a PNG, JPEG or WebP image"),
        ));
    }
    let mut reader = reader;
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_input_side);
    decode_limits.max_image_height = Some(limits.max_input_side);
    decode_limits.max_alloc = Some(limits.max_input_alloc);
    reader.limits(decode_limits);
    reader.decode().map_err(|error| match error {
        image::ImageError::Limits(_) => FieldError::new(
            "image_too_large",
            field,
            format!(
                "{field} is larger than {0}x{0} pixels",
                limits.max_input_side
            ),
        ),
        other => FieldError::new(
            "invalid_image",
            field,
            format!("{field} does not decode: {other}"),
        ),
    })
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

pub fn to_rgb(image: &DynamicImage, width: u32, height: u32, mode: ResizeMode) -> RgbImage {
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
    Ok(sd_core::pipeline::img2img::blur_mask(
        &resize(&gray, mode, width, height),
        blur,
    ))
}

fn strip_data_url(text: &str) -> &str {
    match (text.starts_with("data:"), text.find(";base64,")) {
        (true, Some(index)) => &text[index + ";base64,".len()..],
        _ => text,
    }
}
