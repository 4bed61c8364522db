//! kohya's LDM (SGM) UNet module names -> the diffusers names our layers carry, both underscored.
//!
//! SDXL LoRAs (and some SD 1.x LyCORIS files) name UNet modules after the original checkpoint's blocks:
//! `input_blocks_4_1_transformer_blocks_0_attn1_to_q` is diffusers' `down_blocks_1_attentions_0_...`. Every
//! SD 1.x/2.x/SDXL UNet has two layers per block, which fixes the arithmetic: `input_blocks[1 + 3i + j]` is down
//! block `i`'s resnet (`_0`) or attention (`_1`) `j` and `input_blocks[3(i + 1)]` its downsampler;
//! `output_blocks[3i + j]` is up block `i`'s resnet `j` (`_0`), attention `j` (`_1`) or upsampler (`..._conv`);
//! `middle_block` 0, 1, 2 are resnet, attention, resnet. Inside transformers the names are the same on both sides.

const LAYERS_PER_BLOCK: usize = 2;

/// The diffusers form of an LDM-named UNet module, or `None` when `name` is not in LDM form.
pub fn ldm_to_diffusers(name: &str) -> Option<String> {
    let top = [
        ("time_embed_0", "time_embedding_linear_1"),
        ("time_embed_2", "time_embedding_linear_2"),
        ("label_emb_0_0", "add_embedding_linear_1"),
        ("label_emb_0_2", "add_embedding_linear_2"),
        ("input_blocks_0_0", "conv_in"),
        ("out_0", "conv_norm_out"),
        ("out_2", "conv_out"),
    ];
    if let Some((_, mapped)) = top.iter().find(|(ldm, _)| *ldm == name) {
        return Some((*mapped).to_string());
    }
    let stride = LAYERS_PER_BLOCK + 1;
    if let Some(rest) = name.strip_prefix("input_blocks_") {
        let (n, m, inner) = two_indices(rest)?;
        let (i, j) = ((n.checked_sub(1)?) / stride, (n - 1) % stride);
        return if j == LAYERS_PER_BLOCK {
            (m == 0 && inner == "op").then(|| format!("down_blocks_{i}_downsamplers_0_conv"))
        } else {
            block_part("down_blocks", i, j, m, inner)
        };
    }
    if let Some(rest) = name.strip_prefix("output_blocks_") {
        let (n, m, inner) = two_indices(rest)?;
        let (i, j) = (n / stride, n % stride);
        if m > 0 && inner == "conv" {
            return Some(format!("up_blocks_{i}_upsamplers_0_conv"));
        }
        return block_part("up_blocks", i, j, m, inner);
    }
    if let Some(rest) = name.strip_prefix("middle_block_") {
        let (m, inner) = rest.split_once('_')?;
        return match m.parse::<usize>().ok()? {
            0 => Some(format!("mid_block_resnets_0_{}", resnet_part(inner)?)),
            1 => Some(format!("mid_block_attentions_0_{inner}")),
            2 => Some(format!("mid_block_resnets_1_{}", resnet_part(inner)?)),
            _ => None,
        };
    }
    None
}

/// `"{n}_{m}_{inner}"` -> (n, m, inner).
fn two_indices(rest: &str) -> Option<(usize, usize, &str)> {
    let (n, rest) = rest.split_once('_')?;
    let (m, inner) = rest.split_once('_')?;
    Some((n.parse().ok()?, m.parse().ok()?, inner))
}

fn block_part(blocks: &str, i: usize, j: usize, m: usize, inner: &str) -> Option<String> {
    match m {
        0 => Some(format!("{blocks}_{i}_resnets_{j}_{}", resnet_part(inner)?)),
        1 => Some(format!("{blocks}_{i}_attentions_{j}_{inner}")),
        _ => None,
    }
}

/// An LDM ResBlock's layers under diffusers' ResnetBlock2D names.
fn resnet_part(inner: &str) -> Option<&'static str> {
    Some(match inner {
        "in_layers_0" => "norm1",
        "in_layers_2" => "conv1",
        "emb_layers_1" => "time_emb_proj",
        "out_layers_0" => "norm2",
        "out_layers_3" => "conv2",
        "skip_connection" => "conv_shortcut",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::ldm_to_diffusers;

    #[test]
    fn sdxl_block_names_map_to_diffusers() {
        let cases = [
            (
                "input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
            ),
            (
                "input_blocks_8_1_proj_in",
                "down_blocks_2_attentions_1_proj_in",
            ),
            (
                "input_blocks_1_0_in_layers_2",
                "down_blocks_0_resnets_0_conv1",
            ),
            ("input_blocks_3_0_op", "down_blocks_0_downsamplers_0_conv"),
            (
                "middle_block_1_transformer_blocks_9_ff_net_2",
                "mid_block_attentions_0_transformer_blocks_9_ff_net_2",
            ),
            (
                "middle_block_2_emb_layers_1",
                "mid_block_resnets_1_time_emb_proj",
            ),
            (
                "output_blocks_0_0_skip_connection",
                "up_blocks_0_resnets_0_conv_shortcut",
            ),
            (
                "output_blocks_5_1_transformer_blocks_1_attn2_to_k",
                "up_blocks_1_attentions_2_transformer_blocks_1_attn2_to_k",
            ),
            ("output_blocks_2_2_conv", "up_blocks_0_upsamplers_0_conv"),
            ("output_blocks_2_1_conv", "up_blocks_0_upsamplers_0_conv"),
            ("time_embed_0", "time_embedding_linear_1"),
            ("label_emb_0_2", "add_embedding_linear_2"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(ldm_to_diffusers(ldm).as_deref(), Some(diffusers), "{ldm}");
        }
    }

    #[test]
    fn diffusers_names_are_left_alone() {
        for name in [
            "down_blocks_1_attentions_0_proj_in",
            "time_embedding_linear_1",
            "conv_in",
        ] {
            assert_eq!(ldm_to_diffusers(name), None, "{name}");
        }
    }
}
