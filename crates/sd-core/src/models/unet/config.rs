//! `unet/config.json` as diffusers writes it (`UNet2DConditionModel`'s config), with diffusers' defaults, and
//! the settings this UNet refuses.

use std::path::Path;

use serde::Deserialize;

use crate::models::config::PerBlock;
use crate::{CoreError, Result};

#[derive(Clone, Debug, Deserialize)]
pub struct UNetConfig {
    #[serde(default = "d_four")]
    pub in_channels: usize,
    #[serde(default = "d_four")]
    pub out_channels: usize,
    #[serde(default)]
    pub sample_size: Option<usize>,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "d_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    #[serde(default = "d_mid")]
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "d_false_per_block")]
    pub only_cross_attention: PerBlock<bool>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "d_two_per_block")]
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "d_one")]
    pub downsample_padding: usize,
    #[serde(default = "d_one_f")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "d_silu")]
    pub act_fn: String,
    #[serde(default = "d_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    #[serde(default = "d_cross")]
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "d_one_per_block")]
    pub transformer_layers_per_block: PerBlock<usize>,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<usize>>,
    #[serde(default = "d_heads")]
    pub attention_head_dim: PerBlock<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub upcast_attention: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default = "d_default")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "d_positional")]
    pub time_embedding_type: String,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "d_three")]
    pub conv_in_kernel: usize,
    #[serde(default = "d_three")]
    pub conv_out_kernel: usize,
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub attention_type: Option<String>,
    #[serde(default)]
    pub cross_attention_norm: Option<String>,
    #[serde(default)]
    pub time_embedding_act_fn: Option<String>,
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    #[serde(default)]
    pub class_embeddings_concat: bool,
    #[serde(default)]
    pub resnet_skip_time_act: bool,
    #[serde(default)]
    pub resnet_out_scale_factor: Option<f64>,
}

fn d_four() -> usize {
    4
}
fn d_true() -> bool {
    true
}
fn d_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn d_false_per_block() -> PerBlock<bool> {
    PerBlock::One(false)
}
fn d_two_per_block() -> PerBlock<usize> {
    PerBlock::One(2)
}
fn d_one_per_block() -> PerBlock<usize> {
    PerBlock::One(1)
}
fn d_one() -> usize {
    1
}
fn d_one_f() -> f64 {
    1.0
}
fn d_silu() -> String {
    "silu".into()
}
fn d_groups() -> usize {
    32
}
fn d_eps() -> f64 {
    1e-5
}
fn d_cross() -> PerBlock<usize> {
    PerBlock::One(1280)
}
fn d_heads() -> PerBlock<usize> {
    PerBlock::One(8)
}
fn d_default() -> String {
    "default".into()
}
fn d_positional() -> String {
    "positional".into()
}
fn d_three() -> usize {
    3
}

pub(super) fn check_supported(c: &UNetConfig, path: &Path) -> Result<()> {
    let unsupported = |what: String| {
        Err(CoreError::config(
            path,
            format!("unsupported UNet setting: {what}"),
        ))
    };
    if c.act_fn != "silu" {
        return unsupported(format!("act_fn `{}`", c.act_fn));
    }
    if c.resnet_time_scale_shift != "default" {
        return unsupported(format!(
            "resnet_time_scale_shift `{}`",
            c.resnet_time_scale_shift
        ));
    }
    if c.time_embedding_type != "positional" {
        return unsupported(format!("time_embedding_type `{}`", c.time_embedding_type));
    }
    if let Some(kind) = &c.class_embed_type {
        return unsupported(format!("class_embed_type `{kind}`"));
    }
    if c.num_class_embeds.is_some() {
        return unsupported("num_class_embeds".into());
    }
    if c.encoder_hid_dim.is_some() {
        return unsupported("encoder_hid_dim".into());
    }
    if c.dual_cross_attention {
        return unsupported("dual_cross_attention".into());
    }
    if let Some(kind) = c.attention_type.as_deref().filter(|k| *k != "default") {
        return unsupported(format!("attention_type `{kind}`"));
    }
    if let Some(norm) = &c.cross_attention_norm {
        return unsupported(format!("cross_attention_norm `{norm}`"));
    }
    if let Some(act) = c
        .time_embedding_act_fn
        .as_ref()
        .or(c.timestep_post_act.as_ref())
    {
        return unsupported(format!("time embedding activation `{act}`"));
    }
    if c.class_embeddings_concat || c.resnet_skip_time_act {
        return unsupported("class_embeddings_concat / resnet_skip_time_act".into());
    }
    if c.resnet_out_scale_factor.is_some_and(|f| f != 1.0) {
        return unsupported("resnet_out_scale_factor other than 1".into());
    }
    if c.block_out_channels.is_empty() {
        return unsupported("empty block_out_channels".into());
    }
    Ok(())
}
