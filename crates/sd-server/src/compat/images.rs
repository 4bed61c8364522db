//! Image handling the compatibility APIs share: decoding uploads within the server's limits, A1111's resize
//! modes, masks (binary conversion, blur, invert, A1111's "fill" of masked content) and pasting a result back.

use std::io::Cursor;

use base64::Engine as _;
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader, Luma, Rgb, RgbImage, Rgba};

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

/// A1111's `resize_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// 0 (and 3, "latent upscale", which we do in pixel space): stretch to the target size.
    Stretch,
    /// 1: scale to cover the target, then crop the middle.
    CropAndResize,
    /// 2: scale to fit inside the target, then fill the borders by stretching the edge pixels.
    ResizeAndFill,
}

impl ResizeMode {
    pub fn from_a1111(mode: i64) -> Option<Self> {
        match mode {
            0 | 3 => Some(Self::Stretch),
            1 => Some(Self::CropAndResize),
            2 => Some(Self::ResizeAndFill),
            _ => None,
        }
    }
}

/// The most pixels (and the longest side) any intermediate image of [`resize`] may have. Crop-to-cover of an
/// extreme aspect ratio (a 1x4096 input cropped to 2048x64) would otherwise scale to 2048x8,388,608 pixels
/// first: tens of GB, and an allocation failure aborts the whole process.
pub const MAX_INTERMEDIATE_PIXELS: u64 = 4096 * 4096;
pub const MAX_INTERMEDIATE_SIDE: u64 = 16384;

/// An intermediate image [`resize`] would need is larger than the bounds above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversize {
    pub width: u64,
    pub height: u64,
}

impl Oversize {
    /// The 422 `image_too_large` for `field`, saying the limit.
    pub fn field(self, field: &str) -> FieldError {
        FieldError::new(
            "image_too_large",
            field,
            format!(
                "{field}: its aspect ratio is too far from the output's; resizing it would need a \
                 {}x{} intermediate image, above the limit of {MAX_INTERMEDIATE_PIXELS} pixels and \
                 {MAX_INTERMEDIATE_SIDE} per side (use a closer aspect ratio or another resize mode)",
                self.width, self.height
            ),
        )
    }
}

/// Refuses an intermediate of `width` x `height` beyond the bounds, before anything is allocated.
pub fn check_intermediate(width: u64, height: u64) -> Result<(), Oversize> {
    if width > MAX_INTERMEDIATE_SIDE
        || height > MAX_INTERMEDIATE_SIDE
        || width.saturating_mul(height) > MAX_INTERMEDIATE_PIXELS
    {
        return Err(Oversize { width, height });
    }
    Ok(())
}

/// The size crop-to-cover (`cover` true) or fit-inside scales a source to before cropping or filling.
fn scaled_size(source: (u32, u32), target: (u32, u32), cover: bool) -> (u64, u64) {
    let (source_width, source_height) = (u64::from(source.0), u64::from(source.1));
    let (width, height) = (u64::from(target.0), u64::from(target.1));
    let ratio = target.0 as f64 / target.1 as f64;
    let source_ratio = source.0 as f64 / source.1 as f64;
    let width_bound = if cover {
        ratio > source_ratio
    } else {
        ratio < source_ratio
    };
    if width_bound {
        (width, source_height * width / source_width.max(1))
    } else {
        (source_width * height / source_height.max(1), height)
    }
}

/// Whether [`resize`] of a `source`-sized image to `target` stays within the bounds.
pub fn check_resize(
    source: (u32, u32),
    mode: ResizeMode,
    target: (u32, u32),
) -> Result<(), Oversize> {
    check_intermediate(u64::from(target.0), u64::from(target.1))?;
    match mode {
        ResizeMode::Stretch => Ok(()),
        ResizeMode::CropAndResize => {
            let (w, h) = scaled_size(source, target, true);
            check_intermediate(w, h)
        }
        ResizeMode::ResizeAndFill => {
            let (w, h) = scaled_size(source, target, false);
            check_intermediate(w, h)
        }
    }
}

/// A1111's `images.resize_image` for any pixel type; every intermediate is bounded (checked before any
/// allocation).
pub fn resize<P>(
    image: &image::ImageBuffer<P, Vec<P::Subpixel>>,
    mode: ResizeMode,
    width: u32,
    height: u32,
) -> Result<image::ImageBuffer<P, Vec<P::Subpixel>>, Oversize>
where
    P: image::Pixel + 'static,
{
    let (source_width, source_height) = image.dimensions();
    check_resize((source_width, source_height), mode, (width, height))?;
    if (source_width, source_height) == (width, height) {
        return Ok(image.clone());
    }
    let ratio = f64::from(width) / f64::from(height);
    let source_ratio = f64::from(source_width) / f64::from(source_height);
    let scaled =
        |w: u32, h: u32| image::imageops::resize(image, w.max(1), h.max(1), FilterType::Lanczos3);
    // Checked above: within MAX_INTERMEDIATE_SIDE, so these fit in u32.
    let bounded = |cover: bool| -> Result<(u32, u32), Oversize> {
        let (w, h) = scaled_size((source_width, source_height), (width, height), cover);
        Ok((w as u32, h as u32))
    };
    Ok(match mode {
        ResizeMode::Stretch => scaled(width, height),
        ResizeMode::CropAndResize => {
            let (w, h) = bounded(true)?;
            let resized = scaled(w, h);
            let mut out = image::ImageBuffer::new(width, height);
            let (x, y) = (
                i64::from(width / 2) - i64::from(w / 2),
                i64::from(height / 2) - i64::from(h / 2),
            );
            image::imageops::replace(&mut out, &resized, x, y);
            out
        }
        ResizeMode::ResizeAndFill => {
            let (w, h) = bounded(false)?;
            let (w, h) = (w.clamp(1, width), h.clamp(1, height));
            let resized = scaled(w, h);
            let mut out = image::ImageBuffer::new(width, height);
            let (x, y) = (width / 2 - w / 2, height / 2 - h / 2);
            image::imageops::replace(&mut out, &resized, i64::from(x), i64::from(y));
            // Stretch the first and last row (or column) over the empty bands, as A1111 does.
            if ratio < source_ratio && y > 0 {
                let top = image::imageops::crop_imm(&resized, 0, 0, w, 1).to_image();
                let bottom = image::imageops::crop_imm(&resized, 0, h - 1, w, 1).to_image();
                let band = height - (y + h);
                let top = image::imageops::resize(&top, width, y, FilterType::Nearest);
                image::imageops::replace(&mut out, &top, 0, 0);
                if band > 0 {
                    let bottom = image::imageops::resize(&bottom, width, band, FilterType::Nearest);
                    image::imageops::replace(&mut out, &bottom, 0, i64::from(y + h));
                }
            } else if ratio > source_ratio && x > 0 {
                let left = image::imageops::crop_imm(&resized, 0, 0, 1, h).to_image();
                let right = image::imageops::crop_imm(&resized, w - 1, 0, 1, h).to_image();
                let band = width - (x + w);
                let left = image::imageops::resize(&left, x, height, FilterType::Nearest);
                image::imageops::replace(&mut out, &left, 0, 0);
                if band > 0 {
                    let right = image::imageops::resize(&right, band, height, FilterType::Nearest);
                    image::imageops::replace(&mut out, &right, i64::from(x + w), 0);
                }
            }
            out
        }
    })
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

    #[test]
    fn resize_modes_follow_a1111() {
        // A 4x2 image: left half red, right half blue.
        let source = RgbImage::from_fn(4, 2, |x, _| {
            if x < 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let stretched = resize(&source, ResizeMode::Stretch, 8, 8).unwrap();
        assert_eq!(stretched.dimensions(), (8, 8));
        // Crop and resize to a square keeps the middle: both colours, full height.
        let cropped = resize(&source, ResizeMode::CropAndResize, 4, 4).unwrap();
        assert_eq!(cropped.get_pixel(0, 0).0[0], 255);
        assert_eq!(cropped.get_pixel(3, 3).0[2], 255);
        // Resize and fill to a square letterboxes, filling the bands with the edge rows.
        let filled = resize(&source, ResizeMode::ResizeAndFill, 4, 4).unwrap();
        assert_eq!(*filled.get_pixel(0, 0), Rgb([255, 0, 0]));
        assert_eq!(*filled.get_pixel(3, 3), Rgb([0, 0, 255]));
        assert_eq!(ResizeMode::from_a1111(3), Some(ResizeMode::Stretch));
        assert_eq!(ResizeMode::from_a1111(4), None);
    }

    #[test]
    fn extreme_aspect_ratios_are_refused_before_allocating() {
        // 1x4096 cropped to cover 2048x64 would scale to 2048x8,388,608 first.
        let tall = RgbImage::new(1, 4096);
        let error = resize(&tall, ResizeMode::CropAndResize, 2048, 64).unwrap_err();
        assert_eq!((error.width, error.height), (2048, 8_388_608));
        assert_eq!(error.field("init_images").code, "image_too_large");
        // Fitting inside and stretching stay within the output size.
        assert_eq!(
            resize(&tall, ResizeMode::ResizeAndFill, 2048, 64)
                .unwrap()
                .dimensions(),
            (2048, 64)
        );
        assert_eq!(
            resize(&tall, ResizeMode::Stretch, 2048, 64)
                .unwrap()
                .dimensions(),
            (2048, 64)
        );
        // An ordinary aspect change still works.
        let photo = RgbImage::new(512, 768);
        assert_eq!(
            resize(&photo, ResizeMode::CropAndResize, 1024, 512)
                .unwrap()
                .dimensions(),
            (1024, 512)
        );
    }

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
