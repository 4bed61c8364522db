//! `UNet2DConditionModel` as diffusers defines it, built entirely from `unet/config.json`: block types,
//! per-block heads and transformer depths, linear or conv projections, cross-attention width, upcast attention,
//! 4- or 9-channel inputs, SDXL's `text_time` add-embedding and LCM's timestep condition.

mod blocks;
mod config;
pub mod embeddings;

pub use self::config::UNetConfig;

use std::path::Path;

use candle_core::{Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use crate::nn::{conv2d, group_norm, Conv2d, GroupNorm, KernelOptions};

use self::blocks::{DownBlock, DownBlockSpec, MidBlock, UpBlock, UpBlockSpec};
use self::config::check_supported;
use self::embeddings::{timestep_features, TimestepEmbedding};
use crate::models::attention::TransformerSpec;
use crate::models::resnet::ResnetSpec;
use crate::{CoreError, Result};

/// Extra conditioning SDXL's UNet needs (`added_cond_kwargs`).
pub struct AddedConditions<'a> {
    /// Pooled text embeddings `[batch, pooled_dim]`.
    pub text_embeds: &'a Tensor,
    /// `[batch, 6]`: original size, crop top-left, target size.
    pub time_ids: &'a Tensor,
}

struct AddEmbedding {
    time_dim: usize,
    embedding: TimestepEmbedding,
}

pub struct UNet {
    config: UNetConfig,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AddEmbedding>,
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: Option<MidBlock>,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// Per-block settings after expanding scalars, with the reasons for rejection naming the config file.
struct Expanded {
    heads: Vec<usize>,
    layers: Vec<usize>,
    cross: Vec<usize>,
    depth: Vec<usize>,
    only_cross: Vec<bool>,
}

impl Expanded {
    fn new(c: &UNetConfig, path: &Path) -> Result<Self> {
        let n = c.block_out_channels.len();
        let bad = |field: &str| {
            CoreError::config(
                path,
                format!("`{field}` must be one value or a list of {n}"),
            )
        };
        let heads_cfg = c
            .num_attention_heads
            .clone()
            .unwrap_or_else(|| c.attention_head_dim.clone());
        Ok(Self {
            heads: heads_cfg
                .expand(n)
                .ok_or_else(|| bad("attention_head_dim"))?,
            layers: c
                .layers_per_block
                .expand(n)
                .ok_or_else(|| bad("layers_per_block"))?,
            cross: c
                .cross_attention_dim
                .expand(n)
                .ok_or_else(|| bad("cross_attention_dim"))?,
            depth: c
                .transformer_layers_per_block
                .expand(n)
                .ok_or_else(|| bad("transformer_layers_per_block"))?,
            only_cross: c
                .only_cross_attention
                .expand(n)
                .ok_or_else(|| bad("only_cross_attention"))?,
        })
    }
}

impl UNet {
    /// Builds the network with `kernels` for its layers; `config_path` is only used to name the file in
    /// errors.
    pub fn new(
        vb: VarBuilder,
        config: UNetConfig,
        config_path: &Path,
        kernels: KernelOptions,
    ) -> Result<Self> {
        let c = &config;
        check_supported(c, config_path)?;
        let n = c.block_out_channels.len();
        if c.down_block_types.len() != n || c.up_block_types.len() != n {
            return Err(CoreError::config(
                config_path,
                "down/up block types must match block_out_channels",
            ));
        }
        let e = Expanded::new(c, config_path)?;
        let ch0 = c.block_out_channels[0];
        let time_dim = c.time_embedding_dim.unwrap_or(ch0 * 4);
        let time_embedding =
            TimestepEmbedding::new(vb.pp("time_embedding"), ch0, time_dim, c.time_cond_proj_dim)?;
        let add_embedding = match c.addition_embed_type.as_deref() {
            None => None,
            Some("text_time") => {
                let (Some(time_dim_add), Some(input)) = (
                    c.addition_time_embed_dim,
                    c.projection_class_embeddings_input_dim,
                ) else {
                    return Err(CoreError::config(
                        config_path,
                        "addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim",
                    ));
                };
                Some(AddEmbedding {
                    time_dim: time_dim_add,
                    embedding: TimestepEmbedding::new(
                        vb.pp("add_embedding"),
                        input,
                        time_dim,
                        None,
                    )?,
                })
            }
            Some(other) => {
                return Err(CoreError::config(
                    config_path,
                    format!("unsupported addition_embed_type `{other}`"),
                ))
            }
        };
        let conv_in_cfg = Conv2dConfig {
            padding: c.conv_in_kernel / 2,
            ..Default::default()
        };
        let conv_in = conv2d(
            c.in_channels,
            ch0,
            c.conv_in_kernel,
            conv_in_cfg,
            vb.pp("conv_in"),
            kernels,
        )?;
        let resnet = ResnetSpec {
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            temb_channels: Some(time_dim),
            output_scale_factor: 1.0,
            kernels,
        };
        let transformer = |i: usize, heads: usize, depth: usize| TransformerSpec {
            heads,
            layers: depth,
            context_dim: e.cross[i],
            groups: c.norm_num_groups,
            linear_projection: c.use_linear_projection,
            upcast: c.upcast_attention,
            only_cross_attention: e.only_cross[i],
            kernels,
        };

        let mut down = Vec::with_capacity(n);
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let with_attention = match kind.as_str() {
                "CrossAttnDownBlock2D" => true,
                "DownBlock2D" => false,
                other => {
                    return Err(CoreError::config(
                        config_path,
                        format!("unsupported down block type `{other}`"),
                    ))
                }
            };
            let spec = DownBlockSpec {
                in_ch: if i == 0 {
                    ch0
                } else {
                    c.block_out_channels[i - 1]
                },
                out_ch: c.block_out_channels[i],
                layers: e.layers[i],
                resnet: &resnet,
                transformer: with_attention.then(|| transformer(i, e.heads[i], e.depth[i])),
                downsample: i + 1 < n,
                downsample_padding: c.downsample_padding,
            };
            down.push(DownBlock::new(vb.pp(format!("down_blocks.{i}")), &spec)?);
        }

        let last = n - 1;
        let mid = match c.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => {
                let mid_resnet = ResnetSpec {
                    output_scale_factor: c.mid_block_scale_factor,
                    ..resnet.clone()
                };
                let spec = transformer(last, e.heads[last], e.depth[last]);
                Some(MidBlock::new(
                    vb.pp("mid_block"),
                    c.block_out_channels[last],
                    &mid_resnet,
                    &spec,
                    1,
                )?)
            }
            None => None,
            Some(other) => {
                return Err(CoreError::config(
                    config_path,
                    format!("unsupported mid block type `{other}`"),
                ))
            }
        };

        let rev = |v: &Vec<usize>| v.iter().rev().copied().collect::<Vec<_>>();
        let rev_channels = rev(&c.block_out_channels);
        let rev_heads = rev(&e.heads);
        let rev_layers = rev(&e.layers);
        let rev_depth = c
            .reverse_transformer_layers_per_block
            .clone()
            .unwrap_or_else(|| rev(&e.depth));
        if rev_depth.len() != n {
            return Err(CoreError::config(
                config_path,
                "reverse_transformer_layers_per_block has the wrong length",
            ));
        }
        let mut up = Vec::with_capacity(n);
        let mut prev_out = rev_channels[0];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let with_attention = match kind.as_str() {
                "CrossAttnUpBlock2D" => true,
                "UpBlock2D" => false,
                other => {
                    return Err(CoreError::config(
                        config_path,
                        format!("unsupported up block type `{other}`"),
                    ))
                }
            };
            let block_index = last - i;
            let spec = UpBlockSpec {
                prev_out_ch: prev_out,
                out_ch: rev_channels[i],
                skip_in_ch: rev_channels[(i + 1).min(last)],
                layers: rev_layers[i] + 1,
                resnet: &resnet,
                transformer: with_attention.then(|| TransformerSpec {
                    only_cross_attention: e.only_cross[block_index],
                    ..transformer(block_index, rev_heads[i], rev_depth[i])
                }),
                upsample: i < last,
            };
            up.push(UpBlock::new(vb.pp(format!("up_blocks.{i}")), &spec)?);
            prev_out = rev_channels[i];
        }
        let conv_out_cfg = Conv2dConfig {
            padding: c.conv_out_kernel / 2,
            ..Default::default()
        };
        Ok(Self {
            time_embedding,
            add_embedding,
            conv_in,
            down,
            mid,
            up,
            norm_out: group_norm(c.norm_num_groups, ch0, c.norm_eps, vb.pp("conv_norm_out"))?,
            conv_out: conv2d(
                ch0,
                c.out_channels,
                c.conv_out_kernel,
                conv_out_cfg,
                vb.pp("conv_out"),
                kernels,
            )?,
            config,
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// One denoising evaluation. `timestep` is shared by the batch; `context` is `[batch, tokens, cross_dim]`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<&AddedConditions>,
        timestep_cond: Option<&Tensor>,
    ) -> Result<Tensor> {
        let batch = sample.dim(0)?;
        let dtype = sample.dtype();
        let device = sample.device();
        let c = &self.config;
        let sample = if c.center_input_sample {
            ((sample * 2.0)? - 1.0)?
        } else {
            sample.clone()
        };

        let features = timestep_features(
            &vec![timestep; batch],
            c.block_out_channels[0],
            c.flip_sin_to_cos,
            c.freq_shift,
            device,
        )?
        .to_dtype(dtype)?;
        let mut emb = self.time_embedding.forward(&features, timestep_cond)?;
        if let Some(add) = &self.add_embedding {
            let Some(added) = added else {
                return Err(CoreError::InvalidInput(
                    "this UNet needs pooled text embeddings and time ids (SDXL)".into(),
                ));
            };
            let ids: Vec<f64> = added
                .time_ids
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1()?;
            let time_feats =
                timestep_features(&ids, add.time_dim, c.flip_sin_to_cos, c.freq_shift, device)?
                    .reshape((batch, ()))?
                    .to_dtype(dtype)?;
            let add_input = Tensor::cat(&[&added.text_embeds.to_dtype(dtype)?, &time_feats], 1)?;
            emb = (emb + add.embedding.forward(&add_input, None)?)?;
        }

        // A cancelled job stops between blocks rather than after the whole step (see `crate::interrupt`).
        let mut x = self.conv_in.forward(&sample)?;
        let mut skips = vec![x.clone()];
        for block in &self.down {
            crate::interrupt::check()?;
            let (out, block_skips) = block.forward(&x, &emb, context)?;
            x = out;
            skips.extend(block_skips);
        }
        if let Some(mid) = &self.mid {
            crate::interrupt::check()?;
            x = mid.forward(&x, &emb, context)?;
        }
        for block in &self.up {
            crate::interrupt::check()?;
            let keep = skips.len().saturating_sub(block.num_skips());
            let target = keep
                .checked_sub(1)
                .and_then(|k| skips.get(k))
                .map(|s| s.dims4())
                .transpose()?
                .map(|(_, _, h, w)| (h, w));
            x = block.forward(&x, &mut skips, &emb, context, target)?;
        }
        let x = self.norm_out.forward_silu(&x)?;
        Ok(self.conv_out.forward(&x)?)
    }
}
