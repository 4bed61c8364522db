//! Resizing an input to the output size: the resize modes (stretch, crop to cover, fit and fill the borders)
//! with every intermediate image bounded.

use image::imageops::FilterType;

use crate::error::FieldError;

/// How an input of another size becomes the output size (A1111's `resize_mode`).
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
    /// The native API's `resize_mode` (`resize`/`stretch`, `crop`, `fill`; absent: stretch).
    pub fn from_name(name: Option<&str>) -> Result<Self, FieldError> {
        match name.unwrap_or("resize") {
            "resize" | "stretch" => Ok(Self::Stretch),
            "crop" => Ok(Self::CropAndResize),
            "fill" => Ok(Self::ResizeAndFill),
            other => Err(FieldError::new(
                "invalid_resize_mode",
                "resize_mode",
                format!("unknown resize_mode {other:?}; use resize, crop or fill"),
            )),
        }
    }

    /// A1111's numeric `resize_mode`.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use image::{Rgb, RgbImage};

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
}
