//! `AutoencoderKL` as diffusers defines it: encoder to a diagonal Gaussian over latents, decoder back to pixels,
//! built from `vae/config.json` (block count and widths, groups, latent channels, scaling/shift factors).

mod tiles;

use std::path::Path;

use candle_core::{DType, Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::nn::{conv2d, group_norm, Conv2d, GroupNorm, KernelOptions};
use serde::Deserialize;

use self::tiles::tiled;
use crate::models::attention::VaeAttention;
use crate::models::resnet::{Downsample, ResnetBlock, ResnetSpec, Upsample};
use crate::{CoreError, Result};

#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "d_three")]
    pub in_channels: usize,
    #[serde(default = "d_three")]
    pub out_channels: usize,
    #[serde(default = "d_down")]
    pub down_block_types: Vec<String>,
    #[serde(default = "d_up")]
    pub up_block_types: Vec<String>,
    #[serde(default = "d_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_one")]
    pub layers_per_block: usize,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    #[serde(default = "d_four")]
    pub latent_channels: usize,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "d_scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "d_true")]
    pub force_upcast: bool,
    #[serde(default = "d_true")]
    pub use_quant_conv: bool,
    #[serde(default = "d_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "d_true")]
    pub mid_block_add_attention: bool,
    /// The training resolution (an int, or `[h, w]` in some configs); sets the tile size of tiled decoding.
    #[serde(default)]
    pub sample_size: Option<serde_json::Value>,
}

/// diffusers' tiling geometry: tiles of `sample` pixels (`latent` latents) overlapping by a quarter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGeometry {
    pub latent: usize,
    pub sample: usize,
}

impl VaeConfig {
    pub fn tile_geometry(&self) -> TileGeometry {
        let sample = match &self.sample_size {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::Array(items)) => items.first().and_then(|v| v.as_u64()),
            _ => None,
        }
        .unwrap_or(32) as usize; // diffusers' AutoencoderKL default
        let downscale = 1usize << self.block_out_channels.len().saturating_sub(1);
        TileGeometry {
            latent: (sample / downscale).max(1),
            sample,
        }
    }
}

fn d_three() -> usize {
    3
}
fn d_down() -> Vec<String> {
    vec!["DownEncoderBlock2D".into()]
}
fn d_up() -> Vec<String> {
    vec!["UpDecoderBlock2D".into()]
}
fn d_channels() -> Vec<usize> {
    vec![64]
}
fn d_one() -> usize {
    1
}
fn d_silu() -> String {
    "silu".into()
}
fn d_four() -> usize {
    4
}
fn d_groups() -> usize {
    32
}
fn d_scaling() -> f64 {
    0.18215
}
fn d_true() -> bool {
    true
}

impl VaeConfig {
    /// Pixels per latent along each side: 2^(blocks - 1), 8 for every released SD VAE.
    pub fn downscale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

/// `UNetMidBlock2D` of the VAE: resnet, attention, resnet.
struct VaeMid {
    resnet_1: ResnetBlock,
    attention: Option<VaeAttention>,
    resnet_2: ResnetBlock,
}

impl VaeMid {
    fn new(
        vb: VarBuilder,
        ch: usize,
        spec: &ResnetSpec,
        attention: bool,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            resnet_1: ResnetBlock::new(vb.pp("resnets.0"), ch, ch, spec)?,
            attention: if attention {
                Some(VaeAttention::new(vb.pp("attentions.0"), ch, spec.groups)?)
            } else {
                None
            },
            resnet_2: ResnetBlock::new(vb.pp("resnets.1"), ch, ch, spec)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.resnet_1.forward(x, None)?;
        if let Some(attn) = &self.attention {
            x = attn.forward(&x)?;
        }
        self.resnet_2.forward(&x, None)
    }
}

struct Encoder {
    conv_in: Conv2d,
    blocks: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: VaeMid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(vb: VarBuilder, c: &VaeConfig, spec: &ResnetSpec) -> candle_core::Result<Self> {
        let conv3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let ch = &c.block_out_channels;
        let mut blocks = Vec::with_capacity(ch.len());
        for (i, &out) in ch.iter().enumerate() {
            let vbb = vb.pp(format!("down_blocks.{i}"));
            let resnets = (0..c.layers_per_block)
                .map(|j| {
                    ResnetBlock::new(
                        vbb.pp(format!("resnets.{j}")),
                        if j == 0 {
                            if i == 0 {
                                ch[0]
                            } else {
                                ch[i - 1]
                            }
                        } else {
                            out
                        },
                        out,
                        spec,
                    )
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let down = if i + 1 < ch.len() {
                Some(Downsample::new(
                    vbb.pp("downsamplers.0"),
                    out,
                    0,
                    spec.kernels,
                )?)
            } else {
                None
            };
            blocks.push((resnets, down));
        }
        let last = ch[ch.len() - 1];
        Ok(Self {
            conv_in: conv2d(
                c.in_channels,
                ch[0],
                3,
                conv3,
                vb.pp("conv_in"),
                spec.kernels,
            )?,
            blocks,
            mid: VaeMid::new(vb.pp("mid_block"), last, spec, c.mid_block_add_attention)?,
            norm_out: group_norm(c.norm_num_groups, last, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: conv2d(
                last,
                2 * c.latent_channels,
                3,
                conv3,
                vb.pp("conv_out"),
                spec.kernels,
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for (resnets, down) in &self.blocks {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(d) = down {
                x = d.forward(&x)?;
            }
        }
        let x = self.mid.forward(&x)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&x)?)
    }
}

struct Decoder {
    conv_in: Conv2d,
    mid: VaeMid,
    blocks: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(vb: VarBuilder, c: &VaeConfig, spec: &ResnetSpec) -> candle_core::Result<Self> {
        let conv3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let mut blocks = Vec::with_capacity(rev.len());
        let mut prev = rev[0];
        for (i, &out) in rev.iter().enumerate() {
            let vbb = vb.pp(format!("up_blocks.{i}"));
            let resnets = (0..=c.layers_per_block)
                .map(|j| {
                    ResnetBlock::new(
                        vbb.pp(format!("resnets.{j}")),
                        if j == 0 { prev } else { out },
                        out,
                        spec,
                    )
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let up = if i + 1 < rev.len() {
                Some(Upsample::new(vbb.pp("upsamplers.0"), out, spec.kernels)?)
            } else {
                None
            };
            blocks.push((resnets, up));
            prev = out;
        }
        let first = c.block_out_channels[0];
        Ok(Self {
            conv_in: conv2d(
                c.latent_channels,
                rev[0],
                3,
                conv3,
                vb.pp("conv_in"),
                spec.kernels,
            )?,
            mid: VaeMid::new(vb.pp("mid_block"), rev[0], spec, c.mid_block_add_attention)?,
            blocks,
            norm_out: group_norm(c.norm_num_groups, first, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: conv2d(
                first,
                c.out_channels,
                3,
                conv3,
                vb.pp("conv_out"),
                spec.kernels,
            )?,
        })
    }

    fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv_in.forward(z)?;
        let mut x = self.mid.forward(&x)?;
        for (resnets, up) in &self.blocks {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(u) = up {
                x = u.forward(&x, None)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&x)?)
    }
}

/// The encoder's output: a diagonal Gaussian over latents (before scaling_factor).
pub struct LatentDistribution {
    pub mean: Tensor,
    pub std: Tensor,
}

pub struct AutoencoderKl {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl AutoencoderKl {
    /// Builds the network with `kernels` for its layers; `config_path` is only used to name the file in
    /// errors.
    pub fn new(
        vb: VarBuilder,
        config: VaeConfig,
        config_path: &Path,
        kernels: KernelOptions,
    ) -> Result<Self> {
        let c = &config;
        if c.act_fn != "silu" {
            return Err(CoreError::config(
                config_path,
                format!("unsupported VAE act_fn `{}`", c.act_fn),
            ));
        }
        if c.block_out_channels.is_empty()
            || c.down_block_types.len() != c.block_out_channels.len()
            || c.up_block_types.len() != c.block_out_channels.len()
        {
            return Err(CoreError::config(
                config_path,
                "VAE block types must match block_out_channels",
            ));
        }
        for t in c.down_block_types.iter().chain(&c.up_block_types) {
            if t != "DownEncoderBlock2D" && t != "UpDecoderBlock2D" {
                return Err(CoreError::config(
                    config_path,
                    format!("unsupported VAE block type `{t}`"),
                ));
            }
        }
        let spec = ResnetSpec {
            groups: c.norm_num_groups,
            eps: 1e-6,
            temb_channels: None,
            output_scale_factor: 1.0,
            kernels,
        };
        let l2 = 2 * c.latent_channels;
        let quant_conv = if c.use_quant_conv {
            Some(conv2d(
                l2,
                l2,
                1,
                Conv2dConfig::default(),
                vb.pp("quant_conv"),
                kernels,
            )?)
        } else {
            None
        };
        let post_quant_conv = if c.use_post_quant_conv {
            Some(conv2d(
                c.latent_channels,
                c.latent_channels,
                1,
                Conv2dConfig::default(),
                vb.pp("post_quant_conv"),
                kernels,
            )?)
        } else {
            None
        };
        Ok(Self {
            encoder: Encoder::new(vb.pp("encoder"), c, &spec)?,
            decoder: Decoder::new(vb.pp("decoder"), c, &spec)?,
            quant_conv,
            post_quant_conv,
            config,
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Pixels in [-1, 1], `[batch, 3, H, W]` -> latent distribution.
    pub fn encode(&self, image: &Tensor) -> Result<LatentDistribution> {
        self.distribution(self.moments(image)?)
    }

    /// [`Self::encode`] tile by tile, as diffusers' `tiled_encode` (tiles of the training size every three
    /// quarters of a tile, blended over a quarter of a latent tile).
    pub fn encode_tiled(&self, image: &Tensor) -> Result<LatentDistribution> {
        let TileGeometry { latent, sample } = self.config.tile_geometry();
        let blend = ((latent as f64) * 0.25) as usize;
        let moments = tiled(
            image,
            sample,
            (((sample as f64) * 0.75) as usize).max(1),
            blend,
            latent - blend,
            |tile| self.moments(tile),
        )?;
        self.distribution(moments)
    }

    /// Encoder and quant_conv: `[batch, 2 * latent_channels, h, w]` (mean, log variance).
    fn moments(&self, image: &Tensor) -> Result<Tensor> {
        let mut moments = self.encoder.forward(image)?;
        if let Some(q) = &self.quant_conv {
            moments = q.forward(&moments)?;
        }
        Ok(moments)
    }

    fn distribution(&self, moments: Tensor) -> Result<LatentDistribution> {
        let l = self.config.latent_channels;
        let mean = moments.narrow(1, 0, l)?;
        let logvar = moments
            .narrow(1, l, l)?
            .to_dtype(DType::F32)?
            .clamp(-30f32, 20f32)?;
        let std = (logvar * 0.5)?.exp()?.to_dtype(mean.dtype())?;
        Ok(LatentDistribution { mean, std })
    }

    /// Unscaled latents -> pixels in roughly [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(latents)?,
            None => latents.clone(),
        };
        Ok(self.decoder.forward(&z)?)
    }

    /// Whether `latents` are larger than one tile (diffusers tiles only then).
    pub fn exceeds_tile(&self, latents: &Tensor) -> Result<bool> {
        let (_, _, h, w) = latents.dims4()?;
        let tile = self.config.tile_geometry().latent;
        Ok(h > tile || w > tile)
    }

    /// [`Self::decode`] tile by tile, as diffusers' `tiled_decode`: tiles of the training size every three
    /// quarters of a tile, each blended into its upper and left neighbours over a quarter tile, so memory
    /// depends on the tile size rather than the image size.
    pub fn decode_tiled(&self, latents: &Tensor) -> Result<Tensor> {
        let TileGeometry { latent, sample } = self.config.tile_geometry();
        let blend = ((sample as f64) * 0.25) as usize;
        tiled(
            latents,
            latent,
            (((latent as f64) * 0.75) as usize).max(1),
            blend,
            sample - blend,
            |tile| self.decode(tile),
        )
    }
}
