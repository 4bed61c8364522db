//! Uploaded image files: PNG, JPEG or WebP, raw or base64 (a `data:` URL is fine), decoded within the
//! server's limits (checked before any pixel is allocated).

use std::io::Cursor;

use base64::Engine as _;
use image::{DynamicImage, ImageReader};

use crate::error::FieldError;
use crate::validate::Limits;

/// Decodes a PNG/JPEG/WebP file within the size limits (checked before any pixel is allocated).
pub fn decode_bytes(
    field: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<DynamicImage, FieldError> {
    if bytes.is_empty() {
        return Err(FieldError::new(
            "missing_field",
            field,
            format!("{field} is empty"),
        ));
    }
    if bytes.len() > limits.max_image_bytes {
        return Err(FieldError::new(
            "image_too_large",
            field,
            format!("{field} is larger than {} bytes", limits.max_image_bytes),
        ));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| FieldError::new("invalid_image", field, format!("{field}: {error}")))?;
    if !matches!(
        reader.format(),
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP)
    ) {
        return Err(FieldError::new(
            "invalid_image",
            field,
            format!("{field} is not a PNG, JPEG or WebP image"),
        ));
    }
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

/// Decodes a base64 image (a `data:` URL is fine).
pub fn decode_base64(field: &str, text: &str, limits: &Limits) -> Result<DynamicImage, FieldError> {
    decode_bytes(field, &base64_bytes(field, text, limits)?, limits)
}

/// The bytes of a base64 file (a `data:` URL is fine), within the image size limit.
pub fn base64_bytes(field: &str, text: &str, limits: &Limits) -> Result<Vec<u8>, FieldError> {
    let text = text.trim();
    let payload = match (text.starts_with("data:"), text.find(";base64,")) {
        (true, Some(index)) => &text[index + ";base64,".len()..],
        _ => text,
    };
    if payload.len() / 4 * 3 > limits.max_image_bytes {
        return Err(FieldError::new(
            "image_too_large",
            field,
            format!("{field} is larger than {} bytes", limits.max_image_bytes),
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload.as_bytes())
        .map_err(|error| {
            FieldError::new(
                "invalid_base64",
                field,
                format!("{field} is not valid base64: {error}"),
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use image::RgbImage;

    fn png(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn decodes_within_limits_and_refuses_the_rest() {
        let limits = Limits::default();
        let picture = DynamicImage::ImageRgb8(RgbImage::new(10, 6));
        let bytes = png(&picture);
        assert_eq!(decode_bytes("image", &bytes, &limits).unwrap().width(), 10);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url = format!("data:image/png;base64,{encoded}");
        assert_eq!(decode_base64("image", &url, &limits).unwrap().height(), 6);
        assert_eq!(
            decode_bytes("image", b"GIF89a....", &limits)
                .unwrap_err()
                .code,
            "invalid_image"
        );
        assert_eq!(
            decode_base64("image", "@@@", &limits).unwrap_err().code,
            "invalid_base64"
        );
        let small = Limits {
            max_input_side: 8,
            ..Limits::default()
        };
        assert_eq!(
            decode_bytes("image", &bytes, &small).unwrap_err().code,
            "image_too_large"
        );
    }
}
