//! A1111-only inpainting steps: "fill" of the masked content (`inpainting_fill` 0) and "only masked"
//! (`inpaint_full_res`): the crop around the mask, grown to the output's aspect, and pasting the result back.

use image::{GrayImage, Rgb, RgbImage, Rgba};

use crate::images::{resize, Oversize, ResizeMode};

/// A1111's "fill" masked content: the masked region is painted with ever finer blurs of the unmasked
/// surroundings, so img2img starts from plausible colours rather than what was there.
pub fn fill_masked(image: &RgbImage, mask: &GrayImage) -> RgbImage {
    let (width, height) = image.dimensions();
    // Premultiplied RGBA in 0..1 (the range image's float pixels are clamped to) where the unmasked region
    // is opaque.
    let known = image::ImageBuffer::<Rgba<f32>, Vec<f32>>::from_fn(width, height, |x, y| {
        let alpha = 1.0 - f32::from(mask.get_pixel(x, y).0[0]) / 255.0;
        let Rgb([r, g, b]) = *image.get_pixel(x, y);
        let premultiplied = |channel: u8| f32::from(channel) / 255.0 * alpha;
        Rgba([premultiplied(r), premultiplied(g), premultiplied(b), alpha])
    });
    let mut canvas = image::ImageBuffer::<Rgba<f32>, Vec<f32>>::new(width, height);
    for (radius, repeats) in [
        (256.0, 1),
        (64.0, 1),
        (16.0, 2),
        (4.0, 4),
        (2.0, 2),
        (0.0, 1),
    ] {
        let blurred = if radius > 0.0 {
            image::imageops::fast_blur(&known, radius)
        } else {
            known.clone()
        };
        for _ in 0..repeats {
            for (under, over) in canvas.pixels_mut().zip(blurred.pixels()) {
                // "over" compositing of premultiplied colours.
                let keep = 1.0 - over.0[3];
                for channel in 0..4 {
                    under.0[channel] = over.0[channel] + under.0[channel] * keep;
                }
            }
        }
    }
    RgbImage::from_fn(width, height, |x, y| {
        let Rgba([r, g, b, a]) = *canvas.get_pixel(x, y);
        let unpremultiply = |value: f32| {
            if a > 0.0 {
                (value / a * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        };
        Rgb([unpremultiply(r), unpremultiply(g), unpremultiply(b)])
    })
}

/// The bounding box (x1, y1, x2, y2) of the mask's non-zero pixels grown by `padding`, or `None` for an empty
/// mask (A1111's `get_crop_region_v2`).
pub fn crop_region(mask: &GrayImage, padding: u32) -> Option<(u32, u32, u32, u32)> {
    let mut bounds: Option<(u32, u32, u32, u32)> = None;
    for (x, y, pixel) in mask.enumerate_pixels() {
        if pixel.0[0] > 0 {
            bounds = Some(match bounds {
                None => (x, y, x + 1, y + 1),
                Some((x1, y1, x2, y2)) => (x1.min(x), y1.min(y), x2.max(x + 1), y2.max(y + 1)),
            });
        }
    }
    let (x1, y1, x2, y2) = bounds?;
    Some((
        x1.saturating_sub(padding),
        y1.saturating_sub(padding),
        (x2 + padding).min(mask.width()),
        (y2 + padding).min(mask.height()),
    ))
}

/// Grows a crop region to the aspect ratio of the processing size, staying inside the image (A1111's
/// `expand_crop_region`).
pub fn expand_crop_region(
    (x1, y1, x2, y2): (u32, u32, u32, u32),
    processing: (u32, u32),
    image: (u32, u32),
) -> (u32, u32, u32, u32) {
    let (mut x1, mut y1, mut x2, mut y2) =
        (i64::from(x1), i64::from(y1), i64::from(x2), i64::from(y2));
    let (image_width, image_height) = (i64::from(image.0), i64::from(image.1));
    let crop_ratio = (x2 - x1) as f64 / (y2 - y1) as f64;
    let processing_ratio = f64::from(processing.0) / f64::from(processing.1);
    let grow = |low: &mut i64, high: &mut i64, wanted: f64, limit: i64| {
        let diff = (wanted - (*high - *low) as f64) as i64;
        *low -= diff.div_euclid(2);
        *high += diff - diff.div_euclid(2);
        if *high >= limit {
            let over = *high - limit;
            *high -= over;
            *low -= over;
        }
        if *low < 0 {
            *high -= *low;
            *low = 0;
        }
        if *high >= limit {
            *high = limit;
        }
    };
    if crop_ratio > processing_ratio {
        let wanted = (x2 - x1) as f64 / processing_ratio;
        grow(&mut y1, &mut y2, wanted, image_height);
    } else {
        let wanted = (y2 - y1) as f64 * processing_ratio;
        grow(&mut x1, &mut x2, wanted, image_width);
    }
    let clamp = |value: i64, limit: i64| value.clamp(0, limit) as u32;
    (
        clamp(x1, image_width),
        clamp(y1, image_height),
        clamp(x2, image_width),
        clamp(y2, image_height),
    )
}

/// Puts `generated` (the processed crop) back into `original` at `region`, keeping the original where
/// `mask` (original size, white = repainted) is black: A1111's `apply_overlay` with a paste location.
pub fn paste_back(
    original: &RgbImage,
    generated: &RgbImage,
    region: (u32, u32, u32, u32),
    mask: &GrayImage,
) -> Result<RgbImage, Oversize> {
    let (x1, y1, x2, y2) = region;
    let fitted = resize(generated, ResizeMode::CropAndResize, x2 - x1, y2 - y1)?;
    let mut out = original.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        if !(x1..x2).contains(&x) || !(y1..y2).contains(&y) {
            continue;
        }
        let alpha = f32::from(mask.get_pixel(x, y).0[0]) / 255.0;
        let new = fitted.get_pixel(x - x1, y - y1);
        for channel in 0..3 {
            let blended =
                f32::from(pixel.0[channel]) * (1.0 - alpha) + f32::from(new.0[channel]) * alpha;
            pixel.0[channel] = blended.round() as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use image::Luma;

    #[test]
    fn fill_replaces_masked_pixels_with_surrounding_colour() {
        let mut image = RgbImage::from_pixel(16, 16, Rgb([0, 200, 0]));
        image.put_pixel(8, 8, Rgb([255, 0, 255]));
        let mut mask = GrayImage::new(16, 16);
        mask.put_pixel(8, 8, Luma([255]));
        let filled = fill_masked(&image, &mask);
        assert_eq!(*filled.get_pixel(8, 8), Rgb([0, 200, 0]));
        assert_eq!(*filled.get_pixel(0, 0), Rgb([0, 200, 0]));
    }

    #[test]
    fn crop_regions_grow_to_the_processing_aspect() {
        let mut mask = GrayImage::new(100, 80);
        for x in 40..50 {
            for y in 30..40 {
                mask.put_pixel(x, y, Luma([255]));
            }
        }
        assert_eq!(crop_region(&mask, 0), Some((40, 30, 50, 40)));
        assert_eq!(crop_region(&mask, 5), Some((35, 25, 55, 45)));
        assert_eq!(crop_region(&GrayImage::new(4, 4), 5), None);
        // 20x20 region, 2:1 processing -> 40x20, centred.
        assert_eq!(
            expand_crop_region((35, 25, 55, 45), (128, 64), (100, 80)),
            (25, 25, 65, 45)
        );
        // Near the edge it shifts inside the image.
        assert_eq!(
            expand_crop_region((0, 0, 20, 20), (128, 64), (100, 80)),
            (0, 0, 40, 20)
        );
    }

    #[test]
    fn paste_back_keeps_unmasked_pixels() {
        let original = RgbImage::from_pixel(8, 8, Rgb([10, 10, 10]));
        let generated = RgbImage::from_pixel(4, 4, Rgb([200, 200, 200]));
        let mut mask = GrayImage::new(8, 8);
        mask.put_pixel(3, 3, Luma([255]));
        let out = paste_back(&original, &generated, (2, 2, 6, 6), &mask).unwrap();
        assert_eq!(*out.get_pixel(3, 3), Rgb([200, 200, 200]));
        assert_eq!(*out.get_pixel(4, 4), Rgb([10, 10, 10]));
        assert_eq!(*out.get_pixel(0, 0), Rgb([10, 10, 10]));
    }
}
