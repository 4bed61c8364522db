//! Repaint masks (white = repaint): from an uploaded image in the native/OpenAI convention (transparent
//! repaints) or A1111's (opaque repaints), inverted, blurred.

use image::{DynamicImage, GrayImage, Luma};

/// Any image mode to a repaint mask (white = repaint). RGBA masks follow OpenAI's edits API: transparent
/// (alpha 0) pixels are repainted; other modes use their luminance.
pub fn mask_from_image(mask: &DynamicImage) -> GrayImage {
    if mask.color().has_alpha() {
        let rgba = mask.to_rgba8();
        let alpha_used = rgba.pixels().any(|p| p.0[3] < 255);
        if alpha_used {
            return GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                Luma([255 - rgba.get_pixel(x, y).0[3]])
            });
        }
    }
    mask.to_luma8()
}

/// A1111's `create_binary_mask`: an RGBA mask that uses transparency repaints where it is opaque (alpha > 128);
/// any other mask is its luminance (white = repaint).
pub fn a1111_mask(mask: &DynamicImage) -> GrayImage {
    if mask.color().has_alpha() {
        let rgba = mask.to_rgba8();
        if rgba.pixels().any(|pixel| pixel.0[3] != 255) {
            return GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                Luma([if rgba.get_pixel(x, y).0[3] > 128 {
                    255
                } else {
                    0
                }])
            });
        }
    }
    mask.to_luma8()
}

pub fn invert(mask: &mut GrayImage) {
    for pixel in mask.pixels_mut() {
        pixel.0[0] = 255 - pixel.0[0];
    }
}

/// Gaussian blur of a mask with standard deviation `sigma` (A1111's `mask_blur`).
pub fn blur_mask(mask: &GrayImage, sigma: f32) -> GrayImage {
    if sigma <= 0.0 {
        mask.clone()
    } else {
        image::imageops::blur(mask, sigma)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use image::Rgba;

    #[test]
    fn rgba_masks_repaint_where_opaque_like_a1111() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, Rgba([0, 0, 0, 255]));
        rgba.put_pixel(1, 0, Rgba([255, 255, 255, 0]));
        let mask = a1111_mask(&DynamicImage::ImageRgba8(rgba));
        assert_eq!(mask.as_raw(), &vec![255, 0]);
        let gray = GrayImage::from_raw(2, 1, vec![0, 200]).unwrap();
        let mut mask = a1111_mask(&DynamicImage::ImageLuma8(gray));
        assert_eq!(mask.as_raw(), &vec![0, 200]);
        invert(&mut mask);
        assert_eq!(mask.as_raw(), &vec![255, 55]);
    }
}
