//! diffusers' `ResnetBlock2D`, `Downsample2D` and `Upsample2D`, shared by the UNet and the VAE.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::nn::{
    add_per_channel, conv2d, group_norm, linear, Conv2d, GroupNorm, KernelOptions, Linear,
};

pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

#[derive(Clone, Debug)]
pub struct ResnetSpec {
    pub groups: usize,
    pub eps: f64,
    /// `None` for the VAE's resnets, which take no time embedding.
    pub temb_channels: Option<usize>,
    pub output_scale_factor: f64,
    /// Options of the layers built from this spec.
    pub kernels: KernelOptions,
}

impl ResnetBlock {
    pub fn new(
        vb: VarBuilder,
        in_ch: usize,
        out_ch: usize,
        spec: &ResnetSpec,
    ) -> candle_core::Result<Self> {
        let conv3 = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let time_emb_proj = match spec.temb_channels {
            Some(t) => Some(linear(t, out_ch, vb.pp("time_emb_proj"))?),
            None => None,
        };
        let shortcut = if in_ch != out_ch || vb.contains_tensor("conv_shortcut.weight") {
            Some(conv2d(
                in_ch,
                out_ch,
                1,
                Conv2dConfig::default(),
                vb.pp("conv_shortcut"),
                spec.kernels,
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: group_norm(spec.groups, in_ch, spec.eps, vb.pp("norm1"))?,
            conv1: conv2d(in_ch, out_ch, 3, conv3, vb.pp("conv1"), spec.kernels)?,
            time_emb_proj,
            norm2: group_norm(spec.groups, out_ch, spec.eps, vb.pp("norm2"))?,
            conv2: conv2d(out_ch, out_ch, 3, conv3, vb.pp("conv2"), spec.kernels)?,
            shortcut,
            output_scale_factor: spec.output_scale_factor,
        })
    }

    /// `temb` is the UNet's time embedding `[batch, temb_channels]` (already passed through nothing: the SiLU
    /// before `time_emb_proj` is applied here, as diffusers does).
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => {
                add_per_channel(&h, &proj.forward(&candle_nn::ops::silu(t)?)?)?
            }
            _ => h,
        };
        let skip = match &self.shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        // conv2(...) + skip: the same sum as skip + conv2(...) (addition commutes exactly).
        let out = self
            .conv2
            .forward_residual(&self.norm2.forward_silu(&h)?, &skip)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            out / self.output_scale_factor
        }
    }
}

/// Stride-2 3x3 conv. The UNet pads by `padding` (1) on every side; the VAE pads (0, 1, 0, 1) asymmetrically.
pub struct Downsample {
    conv: Conv2d,
    asymmetric_pad: bool,
}

impl Downsample {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        padding: usize,
        kernels: KernelOptions,
    ) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding,
            stride: 2,
            ..Default::default()
        };
        Ok(Self {
            conv: conv2d(channels, channels, 3, cfg, vb.pp("conv"), kernels)?,
            asymmetric_pad: padding == 0,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.asymmetric_pad {
            let x = x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest-neighbour 2x upsampling (or to an explicit size, matching a skip connection) then a 3x3 conv.
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        kernels: KernelOptions,
    ) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        Ok(Self {
            conv: conv2d(channels, channels, 3, cfg, vb.pp("conv"), kernels)?,
        })
    }

    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((h * 2, w * 2));
        self.conv.forward(&x.upsample_nearest2d(th, tw)?)
    }
}
