//! Tensor names of the original (LDM / CompVis) checkpoint layout mapped to the diffusers names our networks
//! ask for, as diffusers' `single_file_utils` converts them: UNet (`model.diffusion_model.*`), VAE
//! (`first_stage_model.*`), OpenAI CLIP (`*.transformer.*`, already in transformers' names) and OpenCLIP
//! (`*.model.*`: fused `in_proj` q/k/v split in three, `text_projection` transposed).
//!
//! Only names are mapped here (no tensor is read): the weights stay in the memory-mapped file and each one is
//! renamed, split or reshaped when a network asks for it (see [`crate::loader::weights`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::loader::weights::{Mapped, TensorOp};

/// diffusers name -> where its tensor comes from.
pub type NameMap = BTreeMap<String, Mapped>;

fn plain(source: &str) -> Mapped {
    Mapped {
        source: source.to_string(),
        op: TensorOp::Plain,
    }
}

/// `model.diffusion_model.` for checkpoints; `prefix` is stripped from every UNet key before mapping.
pub fn unet_map(keys: &[&str], prefix: &str) -> Result<NameMap, String> {
    let local: Vec<(&str, &str)> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(prefix).map(|rest| (*k, rest)))
        .collect();
    // The first downsampler sits after `layers_per_block` resnets (input block 0 is conv_in).
    let first_op = local
        .iter()
        .filter_map(|(_, k)| {
            let rest = k.strip_prefix("input_blocks.")?;
            let (index, tail) = rest.split_once('.')?;
            (tail == "0.op.weight").then(|| index.parse::<usize>().ok())?
        })
        .min()
        .ok_or("no downsampler (`input_blocks.N.0.op.weight`) in the UNet")?;
    let per = first_op; // layers_per_block + 1
    let mut map = NameMap::new();
    for (full, k) in local {
        let name = map_unet_key(k, per).ok_or_else(|| format!("unknown UNet tensor `{full}`"))?;
        map.insert(name, plain(full));
    }
    Ok(map)
}

fn resnet(rest: &str) -> Option<String> {
    const RENAMES: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("skip_connection.", "conv_shortcut."),
    ];
    RENAMES
        .iter()
        .find_map(|(from, to)| rest.strip_prefix(from).map(|tail| format!("{to}{tail}")))
}

fn split_index(text: &str) -> Option<(usize, &str)> {
    let (index, rest) = text.split_once('.')?;
    Some((index.parse().ok()?, rest))
}

/// One UNet key (without prefix); `per` = layers_per_block + 1.
fn map_unet_key(k: &str, per: usize) -> Option<String> {
    const SIMPLE: [(&str, &str); 6] = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("label_emb.0.0.", "add_embedding.linear_1."),
        ("label_emb.0.2.", "add_embedding.linear_2."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ];
    if let Some(name) = SIMPLE
        .iter()
        .find_map(|(from, to)| k.strip_prefix(from).map(|tail| format!("{to}{tail}")))
    {
        return Some(name);
    }
    if let Some(rest) = k.strip_prefix("input_blocks.") {
        let (i, rest) = split_index(rest)?;
        let (j, rest) = split_index(rest)?;
        if i == 0 {
            return (j == 0).then(|| format!("conv_in.{rest}"));
        }
        let (b, l) = ((i - 1) / per, (i - 1) % per);
        return match (l + 1 == per, j) {
            (true, 0) => rest
                .strip_prefix("op.")
                .map(|tail| format!("down_blocks.{b}.downsamplers.0.conv.{tail}")),
            (false, 0) => resnet(rest).map(|r| format!("down_blocks.{b}.resnets.{l}.{r}")),
            (false, 1) => Some(format!("down_blocks.{b}.attentions.{l}.{rest}")),
            _ => None,
        };
    }
    if let Some(rest) = k.strip_prefix("middle_block.") {
        let (j, rest) = split_index(rest)?;
        return match j {
            0 => resnet(rest).map(|r| format!("mid_block.resnets.0.{r}")),
            1 => Some(format!("mid_block.attentions.0.{rest}")),
            2 => resnet(rest).map(|r| format!("mid_block.resnets.1.{r}")),
            _ => None,
        };
    }
    if let Some(rest) = k.strip_prefix("output_blocks.") {
        let (i, rest) = split_index(rest)?;
        let (j, rest) = split_index(rest)?;
        let (u, l) = (i / per, i % per);
        return match j {
            0 => resnet(rest).map(|r| format!("up_blocks.{u}.resnets.{l}.{r}")),
            _ if rest.starts_with("conv.") => Some(format!("up_blocks.{u}.upsamplers.0.{rest}")),
            1 => Some(format!("up_blocks.{u}.attentions.{l}.{rest}")),
            _ => None,
        };
    }
    None
}

/// The VAE under `prefix` (`first_stage_model.` in checkpoints, empty in VAE files).
pub fn vae_map(keys: &[&str], prefix: &str) -> Result<NameMap, String> {
    let levels = keys
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(prefix)?.strip_prefix("decoder.up.")?;
            split_index(rest).map(|(b, _)| b + 1)
        })
        .max()
        .ok_or("no decoder blocks (`decoder.up.N.*`) in the VAE")?;
    let mut map = NameMap::new();
    for full in keys {
        let Some(k) = full.strip_prefix(prefix) else {
            continue;
        };
        let mapped =
            map_vae_key(k, levels).ok_or_else(|| format!("unknown VAE tensor `{full}`"))?;
        map.insert(
            mapped.0,
            Mapped {
                source: full.to_string(),
                op: mapped.1,
            },
        );
    }
    Ok(map)
}

fn vae_resnet(rest: &str) -> String {
    match rest.strip_prefix("nin_shortcut.") {
        Some(tail) => format!("conv_shortcut.{tail}"),
        None => rest.to_string(),
    }
}

fn map_vae_key(k: &str, levels: usize) -> Option<(String, TensorOp)> {
    let plain = |name: String| Some((name, TensorOp::Plain));
    if k.starts_with("quant_conv.") || k.starts_with("post_quant_conv.") {
        return plain(k.to_string());
    }
    let (side, rest) = k.split_once('.')?;
    if side != "encoder" && side != "decoder" {
        return None;
    }
    match rest.split_once('.')? {
        ("conv_in" | "conv_out", _) => plain(k.to_string()),
        ("norm_out", tail) => plain(format!("{side}.conv_norm_out.{tail}")),
        ("mid", tail) => {
            let (part, tail) = tail.split_once('.')?;
            match part {
                "block_1" => plain(format!("{side}.mid_block.resnets.0.{}", vae_resnet(tail))),
                "block_2" => plain(format!("{side}.mid_block.resnets.1.{}", vae_resnet(tail))),
                "attn_1" => {
                    let (layer, param) = tail.split_once('.')?;
                    let name = match layer {
                        "norm" => "group_norm",
                        "q" => "to_q",
                        "k" => "to_k",
                        "v" => "to_v",
                        "proj_out" => "to_out.0",
                        _ => return None,
                    };
                    // LDM stores these as 1x1 convolutions; diffusers (and our attention) uses linear layers.
                    let op = if layer != "norm" && param == "weight" {
                        TensorOp::ToLinear
                    } else {
                        TensorOp::Plain
                    };
                    Some((format!("{side}.mid_block.attentions.0.{name}.{param}"), op))
                }
                _ => None,
            }
        }
        ("down", tail) if side == "encoder" => {
            let (b, tail) = split_index(tail)?;
            if let Some(tail) = tail.strip_prefix("downsample.") {
                return plain(format!("encoder.down_blocks.{b}.downsamplers.0.{tail}"));
            }
            let (l, tail) = split_index(tail.strip_prefix("block.")?)?;
            plain(format!(
                "encoder.down_blocks.{b}.resnets.{l}.{}",
                vae_resnet(tail)
            ))
        }
        ("up", tail) if side == "decoder" => {
            let (b, tail) = split_index(tail)?;
            // LDM numbers decoder levels from the lowest resolution up; diffusers from the top.
            let u = levels.checked_sub(b + 1)?;
            if let Some(tail) = tail.strip_prefix("upsample.") {
                return plain(format!("decoder.up_blocks.{u}.upsamplers.0.{tail}"));
            }
            let (l, tail) = split_index(tail.strip_prefix("block.")?)?;
            plain(format!(
                "decoder.up_blocks.{u}.resnets.{l}.{}",
                vae_resnet(tail)
            ))
        }
        _ => None,
    }
}

/// Tensors that checkpoints carry but no network uses (buffers and training leftovers).
pub fn is_ignored_text_key(local: &str) -> bool {
    local.ends_with("position_ids") || local == "logit_scale" || local == "attn_mask"
}

/// An OpenAI CLIP text encoder stored in transformers' own names under `prefix`
/// (`cond_stage_model.transformer.`, `conditioner.embedders.0.transformer.`).
pub fn clip_map(keys: &[&str], prefix: &str) -> NameMap {
    let mut map = NameMap::new();
    for full in keys {
        let Some(k) = full.strip_prefix(prefix) else {
            continue;
        };
        if is_ignored_text_key(k) {
            continue;
        }
        // Older checkpoints (transformers < 4.x) omit the `text_model.` scope.
        let name = if k.starts_with("text_model.") || k.starts_with("text_projection.") {
            k.to_string()
        } else {
            format!("text_model.{k}")
        };
        map.insert(name, plain(full));
    }
    map
}

/// The number of transformer blocks (`transformer.resblocks.N`) of an OpenCLIP text encoder.
pub fn open_clip_layers(keys: &[&str], prefix: &str) -> usize {
    keys.iter()
        .filter_map(|k| {
            let rest = k
                .strip_prefix(prefix)?
                .strip_prefix("transformer.resblocks.")?;
            split_index(rest).map(|(i, _)| i + 1)
        })
        .max()
        .unwrap_or(0)
}

/// An OpenCLIP text encoder under `prefix` (`cond_stage_model.model.`, `conditioner.embedders.1.model.`).
pub fn open_clip_map(keys: &[&str], prefix: &str) -> Result<NameMap, String> {
    let mut map = NameMap::new();
    let mut unknown = BTreeSet::new();
    for full in keys {
        let Some(k) = full.strip_prefix(prefix) else {
            continue;
        };
        if is_ignored_text_key(k) {
            continue;
        }
        let source = full.to_string();
        let mut put = |name: String, op: TensorOp| {
            map.insert(
                name,
                Mapped {
                    source: source.clone(),
                    op,
                },
            );
        };
        match k {
            "token_embedding.weight" => put(
                "text_model.embeddings.token_embedding.weight".into(),
                TensorOp::Plain,
            ),
            "positional_embedding" => put(
                "text_model.embeddings.position_embedding.weight".into(),
                TensorOp::Plain,
            ),
            // OpenCLIP applies `x @ text_projection`; a linear layer stores the transpose.
            "text_projection" => put("text_projection.weight".into(), TensorOp::Transpose),
            _ => {
                if let Some(tail) = k.strip_prefix("ln_final.") {
                    put(
                        format!("text_model.final_layer_norm.{tail}"),
                        TensorOp::Plain,
                    );
                } else if let Some((i, tail)) = k
                    .strip_prefix("transformer.resblocks.")
                    .and_then(split_index)
                {
                    let layer = format!("text_model.encoder.layers.{i}");
                    match tail {
                        "attn.in_proj_weight" | "attn.in_proj_bias" => {
                            let param = if tail.ends_with("weight") {
                                "weight"
                            } else {
                                "bias"
                            };
                            for (index, part) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                                put(
                                    format!("{layer}.self_attn.{part}.{param}"),
                                    TensorOp::Chunk { index, of: 3 },
                                );
                            }
                        }
                        _ => {
                            const RENAMES: [(&str, &str); 5] = [
                                ("ln_1.", "layer_norm1."),
                                ("ln_2.", "layer_norm2."),
                                ("attn.out_proj.", "self_attn.out_proj."),
                                ("mlp.c_fc.", "mlp.fc1."),
                                ("mlp.c_proj.", "mlp.fc2."),
                            ];
                            match RENAMES.iter().find_map(|(from, to)| {
                                tail.strip_prefix(from).map(|t| format!("{to}{t}"))
                            }) {
                                Some(name) => put(format!("{layer}.{name}"), TensorOp::Plain),
                                None => {
                                    unknown.insert(full.to_string());
                                }
                            }
                        }
                    }
                } else {
                    unknown.insert(full.to_string());
                }
            }
        }
    }
    match unknown.into_iter().next() {
        Some(first) => Err(format!("unknown OpenCLIP tensor `{first}`")),
        None => Ok(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_blocks_map_like_diffusers() {
        let per = 3;
        let cases = [
            ("input_blocks.0.0.weight", "conv_in.weight"),
            (
                "input_blocks.1.0.in_layers.0.weight",
                "down_blocks.0.resnets.0.norm1.weight",
            ),
            (
                "input_blocks.2.1.proj_in.weight",
                "down_blocks.0.attentions.1.proj_in.weight",
            ),
            (
                "input_blocks.3.0.op.bias",
                "down_blocks.0.downsamplers.0.conv.bias",
            ),
            (
                "input_blocks.4.0.skip_connection.weight",
                "down_blocks.1.resnets.0.conv_shortcut.weight",
            ),
            (
                "middle_block.1.transformer_blocks.0.attn1.to_q.weight",
                "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight",
            ),
            (
                "middle_block.2.out_layers.3.bias",
                "mid_block.resnets.1.conv2.bias",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.5.2.conv.weight",
                "up_blocks.1.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.5.1.norm.weight",
                "up_blocks.1.attentions.2.norm.weight",
            ),
            ("label_emb.0.2.weight", "add_embedding.linear_2.weight"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(map_unet_key(ldm, per).as_deref(), Some(diffusers), "{ldm}");
        }
    }

    #[test]
    fn vae_levels_are_reversed_and_attention_reshaped() {
        let (name, op) =
            map_vae_key("decoder.up.3.block.0.nin_shortcut.weight", 4).unwrap_or_default();
        assert_eq!(name, "decoder.up_blocks.0.resnets.0.conv_shortcut.weight");
        assert_eq!(op, TensorOp::Plain);
        let (name, op) = map_vae_key("encoder.mid.attn_1.q.weight", 4).unwrap_or_default();
        assert_eq!(name, "encoder.mid_block.attentions.0.to_q.weight");
        assert_eq!(op, TensorOp::ToLinear);
    }
}
