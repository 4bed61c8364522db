//! The server's one image path: every API decodes its uploads ([`decode`]), turns its mask into a repaint
//! mask ([`mask`]) and then builds the engine's [`InitImage`] through [`init_image`], which resizes both to the
//! output size ([`resize`]) and blurs the mask there. The core receives images already at the output size.
//! A1111-only steps (fill, "only masked" crop and paste-back) live with the A1111 routes.

pub mod decode;
pub mod mask;
pub mod resize;

pub use decode::{base64_bytes, decode_base64, decode_bytes};
pub use mask::{a1111_mask, blur_mask, invert, mask_from_image};
pub use resize::{check_resize, resize, Oversize, ResizeMode};

use image::{GrayImage, RgbImage};
use sd_core::pipeline::InitImage;

use crate::error::FieldError;

/// What an API settled on for its input picture, before resizing.
#[derive(Debug)]
pub struct InitSource<'a> {
    pub image: RgbImage,
    /// Repaint mask (white = repaint) at any size; `None` for image-to-image.
    pub mask: Option<GrayImage>,
    pub width: u32,
    pub height: u32,
    pub mode: ResizeMode,
    /// Gaussian blur of the mask edges in pixels, applied at the output size.
    pub mask_blur: f32,
    /// `None`: [`default_strength`].
    pub strength: Option<f64>,
    pub preserve_unmasked: bool,
    /// The request fields the image and the mask came from, for error messages.
    pub image_field: &'a str,
    pub mask_field: &'a str,
}

/// How much of the input changes when a request does not say: all of the masked region when inpainting,
/// 0.8 for image-to-image.
pub fn default_strength(inpainting: bool) -> f64 {
    if inpainting {
        1.0
    } else {
        0.8
    }
}

/// The init image (and mask) at the output size: the one place every API's input picture passes through.
pub fn init_image(source: InitSource<'_>) -> Result<InitImage, FieldError> {
    let (width, height, mode) = (source.width, source.height, source.mode);
    let mask = match &source.mask {
        Some(mask) => {
            // Resized first, so the blur runs at the output size (not the upload's).
            let resized = resize(mask, mode, width, height)
                .map_err(|error| error.field(source.mask_field))?;
            Some(blur_mask(&resized, source.mask_blur))
        }
        None => None,
    };
    // After the mask: when both are too far from the output's aspect, the native API names the mask.
    let image = resize(&source.image, mode, width, height)
        .map_err(|error| error.field(source.image_field))?;
    Ok(InitImage {
        image,
        strength: source
            .strength
            .unwrap_or_else(|| default_strength(mask.is_some())),
        mask,
        preserve_unmasked: source.preserve_unmasked,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn source(mask: Option<GrayImage>) -> InitSource<'static> {
        InitSource {
            image: RgbImage::new(100, 50),
            mask,
            width: 64,
            height: 32,
            mode: ResizeMode::Stretch,
            mask_blur: 0.0,
            strength: None,
            preserve_unmasked: false,
            image_field: "image",
            mask_field: "mask",
        }
    }

    #[test]
    fn inputs_arrive_at_the_output_size_with_the_default_strength() {
        let init = init_image(source(None)).unwrap();
        assert_eq!(init.image.dimensions(), (64, 32));
        assert_eq!(init.strength, 0.8);
        let init = init_image(source(Some(GrayImage::new(10, 10)))).unwrap();
        assert_eq!(init.mask.unwrap().dimensions(), (64, 32));
        assert_eq!(init.strength, 1.0);
        let explicit = InitSource {
            strength: Some(0.3),
            ..source(None)
        };
        assert_eq!(init_image(explicit).unwrap().strength, 0.3);
    }

    #[test]
    fn masks_are_blurred_after_resizing() {
        let mut sharp = GrayImage::new(128, 64);
        for x in 0..64 {
            for y in 0..64 {
                sharp.put_pixel(x, y, image::Luma([255]));
            }
        }
        let blurred = InitSource {
            mask_blur: 2.0,
            ..source(Some(sharp.clone()))
        };
        let expected = blur_mask(&resize(&sharp, ResizeMode::Stretch, 64, 32).unwrap(), 2.0);
        assert_eq!(init_image(blurred).unwrap().mask.unwrap(), expected);
    }

    #[test]
    fn oversized_intermediates_name_the_field() {
        let tall = InitSource {
            image: RgbImage::new(1, 4096),
            width: 2048,
            height: 64,
            mode: ResizeMode::CropAndResize,
            image_field: "init_images",
            ..source(None)
        };
        let error = init_image(tall).unwrap_err();
        assert_eq!(error.code, "image_too_large");
        assert_eq!(error.field.as_deref(), Some("init_images"));
    }
}
