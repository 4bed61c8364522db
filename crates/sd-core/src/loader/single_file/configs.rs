//! What a diffusers folder provides and a single file lacks, built into the binary per family: the UNet, VAE
//! and text-encoder configs (read off the tensors' shapes, with the few values shapes cannot tell fixed per
//! family as in the published configs), the scheduler config diffusers' `from_single_file` takes from each
//! family's reference repository, and CLIP's BPE tokenizer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::Family;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::{byte_to_unicode, ClipTokenizer, TokenizerConfig};
use crate::Result;

/// Tensor name -> shape, for every tensor of the file.
pub type Shapes = BTreeMap<String, Vec<usize>>;

fn shape<'a>(shapes: &'a Shapes, name: &str) -> std::result::Result<&'a [usize], String> {
    shapes
        .get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("tensor `{name}` is missing"))
}

fn dim(shapes: &Shapes, name: &str, index: usize) -> std::result::Result<usize, String> {
    shape(shapes, name)?
        .get(index)
        .copied()
        .ok_or_else(|| format!("tensor `{name}` has fewer than {} dims", index + 1))
}

/// Distinct values of the number after `prefix` among the names.
fn indices(shapes: &Shapes, prefix: &str) -> BTreeSet<usize> {
    shapes
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse().ok())
        .collect()
}

/// The UNet config of an LDM UNet under `p` (`model.diffusion_model.`), as diffusers'
/// `create_unet_diffusers_config_from_ldm` derives it, from shapes; heads per family (SD 1.x: 8 heads;
/// SD 2.x and SDXL: 64-wide heads). `pooled_dim` is the second text encoder's projection width (SDXL).
pub fn unet_config(
    shapes: &Shapes,
    p: &str,
    family: Family,
    v_prediction: bool,
    pooled_dim: usize,
) -> std::result::Result<Value, String> {
    let conv_in = format!("{p}input_blocks.0.0.weight");
    let in_channels = dim(shapes, &conv_in, 1)?;
    let out_channels = dim(shapes, &format!("{p}out.2.weight"), 0)?;
    let per = indices(shapes, &format!("{p}input_blocks."))
        .into_iter()
        .find(|i| shapes.contains_key(&format!("{p}input_blocks.{i}.0.op.weight")))
        .ok_or("no downsampler in the UNet")?;
    let inputs = indices(shapes, &format!("{p}input_blocks.")).len();
    let levels = inputs / per;
    let mut channels = Vec::new();
    let mut down_types = Vec::new();
    let mut depths = Vec::new();
    let mut context = None;
    let mut linear = false;
    for b in 0..levels {
        let block = format!("{p}input_blocks.{}.", 1 + b * per);
        channels.push(dim(shapes, &format!("{block}0.out_layers.3.weight"), 0)?);
        let attention = format!("{block}1.");
        if let Ok(proj_in) = shape(shapes, &format!("{attention}proj_in.weight")) {
            linear = proj_in.len() == 2;
            down_types.push("CrossAttnDownBlock2D");
            depths.push(indices(shapes, &format!("{attention}transformer_blocks.")).len());
            if context.is_none() {
                context = Some(dim(
                    shapes,
                    &format!("{attention}transformer_blocks.0.attn2.to_k.weight"),
                    1,
                )?);
            }
        } else {
            down_types.push("DownBlock2D");
            depths.push(1);
        }
    }
    let up_types: Vec<&str> = (0..levels)
        .map(|u| {
            if shapes.contains_key(&format!("{p}output_blocks.{}.1.proj_in.weight", u * per)) {
                "CrossAttnUpBlock2D"
            } else {
                "UpBlock2D"
            }
        })
        .collect();
    let context = context.ok_or("the UNet has no cross-attention blocks")?;
    let heads: Value = match family {
        Family::Sd1 => json!(8),
        Family::Sd2 | Family::Sdxl => json!(channels.iter().map(|c| c / 64).collect::<Vec<_>>()),
    };
    let mut config = json!({
        "_class_name": "UNet2DConditionModel",
        "in_channels": in_channels,
        "out_channels": out_channels,
        "block_out_channels": channels,
        "down_block_types": down_types,
        "up_block_types": up_types,
        "layers_per_block": per - 1,
        "transformer_layers_per_block": depths,
        "cross_attention_dim": context,
        "attention_head_dim": heads,
        "use_linear_projection": linear,
        "upcast_attention": family == Family::Sd2 && v_prediction,
        "norm_num_groups": 32,
        "sample_size": match family {
            Family::Sd1 => 64,
            Family::Sd2 if v_prediction => 96,
            Family::Sd2 => 64,
            Family::Sdxl => 128,
        },
    });
    if let Ok(label) = shape(shapes, &format!("{p}label_emb.0.0.weight")) {
        let input = label.get(1).copied().unwrap_or(0);
        let time_dim = input.saturating_sub(pooled_dim) / 6;
        config["addition_embed_type"] = json!("text_time");
        config["addition_time_embed_dim"] = json!(time_dim);
        config["projection_class_embeddings_input_dim"] = json!(input);
    }
    Ok(config)
}

/// The AutoencoderKL config of an LDM VAE under `p`.
pub fn vae_config(shapes: &Shapes, p: &str, family: Family) -> std::result::Result<Value, String> {
    let levels = indices(shapes, &format!("{p}encoder.down.")).len();
    let channels = (0..levels)
        .map(|b| {
            dim(
                shapes,
                &format!("{p}encoder.down.{b}.block.0.conv2.weight"),
                0,
            )
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let layers = indices(shapes, &format!("{p}encoder.down.0.block.")).len();
    vae_json(shapes, p, channels, layers, family)
}

/// The AutoencoderKL config of a VAE file already in diffusers' names.
pub fn diffusers_vae_config(shapes: &Shapes, family: Family) -> std::result::Result<Value, String> {
    let levels = indices(shapes, "encoder.down_blocks.").len();
    let channels = (0..levels)
        .map(|b| {
            dim(
                shapes,
                &format!("encoder.down_blocks.{b}.resnets.0.conv2.weight"),
                0,
            )
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let layers = indices(shapes, "encoder.down_blocks.0.resnets.").len();
    vae_json(shapes, "", channels, layers, family)
}

fn vae_json(
    shapes: &Shapes,
    p: &str,
    channels: Vec<usize>,
    layers: usize,
    family: Family,
) -> std::result::Result<Value, String> {
    let levels = channels.len();
    if levels == 0 {
        return Err("no encoder blocks in the VAE".into());
    }
    Ok(json!({
        "_class_name": "AutoencoderKL",
        "in_channels": dim(shapes, &format!("{p}encoder.conv_in.weight"), 1)?,
        "out_channels": dim(shapes, &format!("{p}decoder.conv_out.weight"), 0)?,
        "block_out_channels": channels,
        "down_block_types": vec!["DownEncoderBlock2D"; levels],
        "up_block_types": vec!["UpDecoderBlock2D"; levels],
        "layers_per_block": layers,
        "latent_channels": dim(shapes, &format!("{p}encoder.conv_out.weight"), 0)? / 2,
        "norm_num_groups": 32,
        "scaling_factor": if family == Family::Sdxl { 0.13025 } else { 0.18215 },
        "sample_size": match family { Family::Sd1 => 512, Family::Sd2 => 768, Family::Sdxl => 1024 },
        "force_upcast": true,
    }))
}

/// A CLIP text config read off the mapped (transformers-named) shapes. OpenAI CLIP uses quick GELU, OpenCLIP
/// exact GELU; heads are 64 wide in every released encoder.
pub fn text_config(
    mapped_shapes: &HashMap<String, Vec<usize>>,
    layers: usize,
    open_clip: bool,
) -> std::result::Result<Value, String> {
    let get = |name: &str, i: usize| {
        mapped_shapes
            .get(name)
            .and_then(|s| s.get(i).copied())
            .ok_or_else(|| format!("text encoder tensor `{name}` is missing"))
    };
    let hidden = get("text_model.embeddings.token_embedding.weight", 1)?;
    let projection = get("text_projection.weight", 0).unwrap_or(hidden);
    Ok(json!({
        "vocab_size": get("text_model.embeddings.token_embedding.weight", 0)?,
        "hidden_size": hidden,
        "intermediate_size": get("text_model.encoder.layers.0.mlp.fc1.weight", 0)?,
        "num_hidden_layers": layers,
        "num_attention_heads": (hidden / 64).max(1),
        "max_position_embeddings": get("text_model.embeddings.position_embedding.weight", 0)?,
        "hidden_act": if open_clip { "gelu" } else { "quick_gelu" },
        "layer_norm_eps": 1e-5,
        "projection_dim": projection,
        // The published SD configs keep transformers' legacy ids: pooling takes the highest id (the EOS).
        "eos_token_id": 2,
    }))
}

/// The scheduler config of each family's reference repository (SD 1.5: PNDM; SD 2.x: DDIM; SDXL: Euler),
/// with the prediction type decided for this file.
pub fn scheduler_config(family: Family, prediction_type: &str) -> Result<SchedulerConfig> {
    let mut config = match family {
        Family::Sd1 => json!({"_class_name": "PNDMScheduler", "skip_prk_steps": true}),
        Family::Sd2 => json!({"_class_name": "DDIMScheduler", "clip_sample": false}),
        Family::Sdxl => json!({
            "_class_name": "EulerDiscreteScheduler", "interpolation_type": "linear",
            "timestep_spacing": "leading", "use_karras_sigmas": false, "clip_sample": false,
        }),
    };
    for (key, value) in [
        ("beta_start", json!(0.00085)),
        ("beta_end", json!(0.012)),
        ("beta_schedule", json!("scaled_linear")),
        ("num_train_timesteps", json!(1000)),
        ("set_alpha_to_one", json!(false)),
        ("steps_offset", json!(1)),
        ("prediction_type", json!(prediction_type)),
    ] {
        config[key] = value;
    }
    SchedulerConfig::from_json(&config.to_string())
}

/// CLIP's merges (the same 48,894 for OpenAI CLIP and OpenCLIP), from transformers' `openai/clip-vit-large-patch14`.
const CLIP_MERGES: &str =
    include_str!("../../../../../tests/fixtures/tokenizer/clip-vit-l/merges.txt");

/// CLIP's vocabulary, which is a function of its merges: the 256 byte symbols, the same with `</w>`, every
/// merge's result in merge order, then `<|startoftext|>` and `<|endoftext|>` (OpenAI's `SimpleTokenizer`).
pub fn clip_vocab() -> HashMap<String, u32> {
    let table = byte_to_unicode();
    // `bytes_to_unicode()`'s order: the printable bytes (which map to themselves), then the others.
    let printable = |b: usize| matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    let bytes: Vec<char> = (0..256)
        .filter(|&b| printable(b))
        .chain((0..256).filter(|&b| !printable(b)))
        .map(|b| table[b])
        .collect();
    let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    tokens.extend(bytes.iter().map(|c| format!("{c}</w>")));
    tokens.extend(
        CLIP_MERGES
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.is_empty())
            .map(|l| l.replacen(' ', "", 1)),
    );
    tokens.push("<|startoftext|>".into());
    tokens.push("<|endoftext|>".into());
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect()
}

/// The tokenizer of SD 1.x and SDXL's first encoder (pads with `<|endoftext|>`) or of OpenCLIP encoders
/// (SD 2.x, SDXL's second: pads with `!`), as their published tokenizer folders configure them.
pub fn clip_tokenizer(open_clip: bool) -> Result<ClipTokenizer> {
    let named = |pad: Value| {
        json!({
            "bos_token": {"content": "<|startoftext|>", "normalized": true},
            "eos_token": {"content": "<|endoftext|>", "normalized": true},
            "unk_token": {"content": "<|endoftext|>", "normalized": true},
            "pad_token": pad,
        })
    };
    let map = if open_clip {
        named(json!("!"))
    } else {
        named(json!("<|endoftext|>"))
    };
    let config = TokenizerConfig::from_named(map.as_object().cloned().unwrap_or_default());
    ClipTokenizer::from_vocab(clip_vocab(), CLIP_MERGES, &config)
}
