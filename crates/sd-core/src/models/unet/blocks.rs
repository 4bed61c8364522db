//! The UNet's down, mid and up blocks (`CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn`,
//! `UpBlock2D`, `CrossAttnUpBlock2D`): resnets, optional spatial transformers, resampling.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::models::attention::{SpatialTransformer, TransformerSpec};
use crate::models::resnet::{Downsample, ResnetBlock, ResnetSpec, Upsample};

pub struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    downsample: Option<Downsample>,
}

pub struct DownBlockSpec<'a> {
    pub in_ch: usize,
    pub out_ch: usize,
    pub layers: usize,
    pub resnet: &'a ResnetSpec,
    /// `None` for `DownBlock2D`.
    pub transformer: Option<TransformerSpec>,
    pub downsample: bool,
    pub downsample_padding: usize,
}

impl DownBlock {
    pub fn new(vb: VarBuilder, s: &DownBlockSpec) -> candle_core::Result<Self> {
        let mut resnets = Vec::with_capacity(s.layers);
        let mut attentions = Vec::new();
        for j in 0..s.layers {
            let in_ch = if j == 0 { s.in_ch } else { s.out_ch };
            resnets.push(ResnetBlock::new(
                vb.pp(format!("resnets.{j}")),
                in_ch,
                s.out_ch,
                s.resnet,
            )?);
            if let Some(t) = &s.transformer {
                attentions.push(SpatialTransformer::new(
                    vb.pp(format!("attentions.{j}")),
                    s.out_ch,
                    t,
                )?);
            }
        }
        let downsample = if s.downsample {
            Some(Downsample::new(
                vb.pp("downsamplers.0"),
                s.out_ch,
                s.downsample_padding,
                s.resnet.kernels,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsample,
        })
    }

    /// Returns the block output and the skip states it contributes (one per layer, plus the downsampled one).
    pub fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> candle_core::Result<(Tensor, Vec<Tensor>)> {
        let mut x = x.clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(&x, Some(temb))?;
            if let Some(attn) = self.attentions.get(j) {
                x = attn.forward(&x, context)?;
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsample {
            x = down.forward(&x)?;
            skips.push(x.clone());
        }
        Ok((x, skips))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
pub struct MidBlock {
    first: ResnetBlock,
    rest: Vec<(SpatialTransformer, ResnetBlock)>,
}

impl MidBlock {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        resnet: &ResnetSpec,
        transformer: &TransformerSpec,
        layers: usize,
    ) -> candle_core::Result<Self> {
        let first = ResnetBlock::new(vb.pp("resnets.0"), channels, channels, resnet)?;
        let rest = (0..layers)
            .map(|i| {
                Ok((
                    SpatialTransformer::new(
                        vb.pp(format!("attentions.{i}")),
                        channels,
                        transformer,
                    )?,
                    ResnetBlock::new(
                        vb.pp(format!("resnets.{}", i + 1)),
                        channels,
                        channels,
                        resnet,
                    )?,
                ))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { first, rest })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mut x = self.first.forward(x, Some(temb))?;
        for (attn, resnet) in &self.rest {
            x = resnet.forward(&attn.forward(&x, context)?, Some(temb))?;
        }
        Ok(x)
    }
}

pub struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    upsample: Option<Upsample>,
}

pub struct UpBlockSpec<'a> {
    pub prev_out_ch: usize,
    pub out_ch: usize,
    /// Channels of the down block this one mirrors (its last skip's width).
    pub skip_in_ch: usize,
    pub layers: usize,
    pub resnet: &'a ResnetSpec,
    pub transformer: Option<TransformerSpec>,
    pub upsample: bool,
}

impl UpBlock {
    pub fn new(vb: VarBuilder, s: &UpBlockSpec) -> candle_core::Result<Self> {
        let mut resnets = Vec::with_capacity(s.layers);
        let mut attentions = Vec::new();
        for j in 0..s.layers {
            let skip_ch = if j == s.layers - 1 {
                s.skip_in_ch
            } else {
                s.out_ch
            };
            let in_ch = if j == 0 { s.prev_out_ch } else { s.out_ch };
            resnets.push(ResnetBlock::new(
                vb.pp(format!("resnets.{j}")),
                in_ch + skip_ch,
                s.out_ch,
                s.resnet,
            )?);
            if let Some(t) = &s.transformer {
                attentions.push(SpatialTransformer::new(
                    vb.pp(format!("attentions.{j}")),
                    s.out_ch,
                    t,
                )?);
            }
        }
        let upsample = if s.upsample {
            Some(Upsample::new(
                vb.pp("upsamplers.0"),
                s.out_ch,
                s.resnet.kernels,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsample,
        })
    }

    pub fn num_skips(&self) -> usize {
        self.resnets.len()
    }

    /// `skips` are consumed from the end; `upsample_to` is the spatial size of the next skip, so odd latent
    /// sizes come back to the exact shape the down path had.
    pub fn forward(
        &self,
        x: &Tensor,
        skips: &mut Vec<Tensor>,
        temb: &Tensor,
        context: &Tensor,
        upsample_to: Option<(usize, usize)>,
    ) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            let Some(skip) = skips.pop() else {
                candle_core::bail!("UNet up block ran out of skip connections");
            };
            x = Tensor::cat(&[&x, &skip], 1)?;
            x = resnet.forward(&x, Some(temb))?;
            if let Some(attn) = self.attentions.get(j) {
                x = attn.forward(&x, context)?;
            }
        }
        if let Some(up) = &self.upsample {
            x = up.forward(&x, upsample_to)?;
        }
        Ok(x)
    }
}
