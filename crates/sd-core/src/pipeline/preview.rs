//! Cheap latent previews: a per-family linear map from latent channels to RGB (the factors ComfyUI and A1111
//! use for their "approximate" previews), so progress images never cost a VAE decode on the hot path.

use candle_core::{DType, IndexOp, Tensor};
use image::RgbImage;

use crate::models::Family;
use crate::Result;

/// SD 1.x / 2.x latents (4 channels) to RGB.
const SD_FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];
/// SDXL latents to RGB, with a bias.
const SDXL_FACTORS: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];
const SDXL_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

pub struct LatentPreviewer {
    factors: Vec<[f32; 3]>,
    bias: [f32; 3],
}

impl LatentPreviewer {
    pub fn for_family(family: Family, latent_channels: usize) -> Self {
        let (factors, bias) = match (family, latent_channels) {
            (Family::Sdxl, 4) => (SDXL_FACTORS.to_vec(), SDXL_BIAS),
            (_, 4) => (SD_FACTORS.to_vec(), [0.0; 3]),
            // Unknown latent spaces: a grey average of the channels.
            (_, n) => (vec![[1.0 / n.max(1) as f32; 3]; n], [0.0; 3]),
        };
        Self { factors, bias }
    }

    /// Image 0 of `latents` (`[batch, channels, h, w]`) as an RGB image of h x w pixels.
    pub fn preview(&self, latents: &Tensor) -> Result<RgbImage> {
        let first = latents
            .i(0)?
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?;
        let (channels, h, w) = first.dims3()?;
        let data: Vec<Vec<f32>> = (0..channels)
            .map(|c| first.i(c)?.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let mut img = RgbImage::new(w as u32, h as u32);
        for (idx, pixel) in img.pixels_mut().enumerate() {
            for (rgb, value) in pixel.0.iter_mut().enumerate() {
                let mut v = self.bias[rgb];
                for (c, plane) in data.iter().enumerate().take(self.factors.len()) {
                    v += plane[idx] * self.factors[c][rgb];
                }
                *value = (((v + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        Ok(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_maps_each_latent_pixel_to_one_rgb_pixel() {
        let latents = Tensor::zeros((2, 4, 3, 5), DType::F32, &candle_core::Device::Cpu).unwrap();
        let img = LatentPreviewer::for_family(Family::Sd1, 4)
            .preview(&latents)
            .unwrap();
        assert_eq!((img.width(), img.height()), (5, 3));
        // zero latents sit in the middle of the range
        assert!(img.pixels().all(|p| p.0 == [128, 128, 128]));
    }

    #[test]
    fn preview_follows_the_first_channel_factors() {
        let mut data = vec![0f32; 4 * 2 * 2];
        data[..4].fill(1.0); // channel 0 = 1
        let latents = Tensor::from_vec(data, (1, 4, 2, 2), &candle_core::Device::Cpu).unwrap();
        let img = LatentPreviewer::for_family(Family::Sd1, 4)
            .preview(&latents)
            .unwrap();
        let expected = |f: f32| (((f + 1.0) / 2.0) * 255.0).round() as u8;
        assert_eq!(
            img.get_pixel(0, 0).0,
            [expected(0.3512), expected(0.2297), expected(0.3227)]
        );
    }
}
