//! Single files without generating: family detection from the tensors, the full-size key mapping, the
//! built-in tokenizer and config folders.

use std::collections::{BTreeMap, BTreeSet};

use sd_core::loader::single_file::{configs, detect, Checkpoint, Family};
use serde_json::Value;

use super::{load_file, single, with_config};
use crate::common::fixtures;

fn shapes_of(file: &str) -> configs::Shapes {
    Checkpoint::open(&single(file), None).unwrap().shapes
}

#[test]
fn families_are_detected_from_the_tensors() {
    assert_eq!(detect(&shapes_of("tiny-sd1.safetensors")), Ok(Family::Sd1));
    assert_eq!(
        detect(&shapes_of("tiny-sd1-inpaint.safetensors")),
        Ok(Family::Sd1)
    );
    assert_eq!(detect(&shapes_of("tiny-sd2.safetensors")), Ok(Family::Sd2));
    assert_eq!(
        detect(&shapes_of("tiny-sdxl.safetensors")),
        Ok(Family::Sdxl)
    );
    assert_eq!(
        detect(&shapes_of("tiny-sdxl-inpaint-f16.safetensors")),
        Ok(Family::Sdxl)
    );
    // Without text encoders the cross-attention width decides; an unknown width asks for --family.
    let unet_only = |file: &str| -> configs::Shapes {
        shapes_of(file)
            .into_iter()
            .filter(|(k, _)| k.starts_with("model.diffusion_model."))
            .collect()
    };
    let err = detect(&unet_only("tiny-sd1.safetensors")).unwrap_err();
    assert!(err.contains("--family") && err.contains("32"), "{err}");
    for (name, family) in [
        ("sd15", Family::Sd1),
        ("sd21", Family::Sd2),
        ("sdxl", Family::Sdxl),
    ] {
        let keys = full_keys(name);
        let ldm = ldm_shapes(&keys);
        assert_eq!(detect(&ldm), Ok(family), "{name}");
        let unet: configs::Shapes = ldm
            .into_iter()
            .filter(|(k, _)| k.starts_with("model.diffusion_model."))
            .collect();
        assert_eq!(detect(&unet), Ok(family), "{name} UNet alone");
    }
}

fn full_keys(name: &str) -> Value {
    let path = single(&format!("keys-{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ldm_shapes(keys: &Value) -> configs::Shapes {
    keys["ldm"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_value(v.clone()).unwrap()))
        .collect()
}

fn expected(keys: &Value, component: &str) -> BTreeMap<String, Vec<usize>> {
    serde_json::from_value(keys["diffusers"][component].clone()).unwrap()
}

/// Full-size SD 1.5 / 2.1 / SDXL architectures (names and shapes from diffusers' and transformers' model
/// classes, no weights): every tensor of the file is mapped or deliberately ignored, and every network gets
/// exactly the names and shapes it needs; the built-in configs equal the published ones.
#[test]
fn full_size_checkpoints_map_every_tensor_to_what_the_networks_need() {
    for name in ["sd15", "sd21", "sdxl"] {
        let keys = full_keys(name);
        let ckpt =
            Checkpoint::from_shapes(&single("full.safetensors"), ldm_shapes(&keys), None).unwrap();
        let mut consumed = BTreeSet::new();
        let mut check = |component: &str,
                         map: &sd_core::loader::single_file::keys::NameMap,
                         extra: usize| {
            let got: BTreeMap<String, Vec<usize>> = ckpt.mapped_shapes(map).into_iter().collect();
            // transformers 5 drops CLIP's `text_model.` scope; the loader takes names with or without it.
            let want: BTreeMap<String, Vec<usize>> = expected(&keys, component)
                .into_iter()
                .map(|(k, v)| {
                    match k.starts_with("text_model.")
                        || k.starts_with("text_projection.")
                        || component.starts_with("unet")
                        || component == "vae"
                    {
                        true => (k, v),
                        false => (format!("text_model.{k}"), v),
                    }
                })
                .collect();
            let surplus: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let lacking: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            assert!(
                lacking.is_empty(),
                "{name} {component}: not provided {lacking:?}"
            );
            assert_eq!(
                surplus.len(),
                extra,
                "{name} {component}: extra names {surplus:?}"
            );
            for (k, shape) in &want {
                assert_eq!(&got[k], shape, "{name} {component} {k}");
            }
            consumed.extend(map.values().map(|m| m.source.clone()));
        };
        check("unet", &ckpt.unet_map().unwrap(), 0);
        check("vae", &ckpt.vae_map().unwrap().unwrap(), 0);
        let (map, layers) = ckpt.text_map().unwrap().unwrap();
        // SD 2.1: OpenCLIP's 24th block is in the file; diffusers' config (23 layers) leaves it unused.
        let extra = if name == "sd21" { 16 } else { 0 };
        check("text_encoder", &map, extra);
        let te_config =
            configs::text_config(&ckpt.mapped_shapes(&map), layers, name == "sd21").unwrap();
        assert_eq!(
            te_config["num_hidden_layers"],
            if name == "sd21" { 23 } else { 12 }
        );
        let mut pooled = 1280;
        if let Some((map, layers)) = ckpt.text_map_2().unwrap() {
            check("text_encoder_2", &map, 0);
            let c = configs::text_config(&ckpt.mapped_shapes(&map), layers, true).unwrap();
            assert_eq!(
                (
                    c["num_hidden_layers"].as_u64(),
                    c["num_attention_heads"].as_u64()
                ),
                (Some(32), Some(20))
            );
            pooled = c["projection_dim"].as_u64().unwrap() as usize;
        }
        let ignored: Vec<&String> = ckpt
            .shapes
            .keys()
            .filter(|k| !consumed.contains(*k))
            .collect();
        for k in &ignored {
            assert!(
                k.ends_with("position_ids")
                    || k.ends_with("logit_scale")
                    || k.ends_with("text_projection"),
                "{name}: tensor {k} is neither used nor known to be unused"
            );
        }
        let diffusers_vae: configs::Shapes = expected(&keys, "vae").into_iter().collect();
        let from_diffusers = configs::diffusers_vae_config(&diffusers_vae, ckpt.family).unwrap();
        let vae = configs::vae_config(&ckpt.shapes, "first_stage_model.", ckpt.family).unwrap();
        assert_eq!(
            from_diffusers, vae,
            "{name}: the same VAE config from either layout"
        );
        assert_eq!(
            vae["block_out_channels"],
            serde_json::json!([128, 256, 512, 512])
        );
        assert_eq!(
            (
                vae["layers_per_block"].as_u64(),
                vae["latent_channels"].as_u64()
            ),
            (Some(2), Some(4))
        );
        let scaling = if name == "sdxl" { 0.13025 } else { 0.18215 };
        assert_eq!(vae["scaling_factor"].as_f64(), Some(scaling));
        let v = name == "sd21";
        let unet = configs::unet_config(
            &ckpt.shapes,
            "model.diffusion_model.",
            ckpt.family,
            v,
            pooled,
        )
        .unwrap();
        for (key, want) in keys["unet_config"].as_object().unwrap() {
            if key == "attention_head_dim" && name == "sd15" {
                assert_eq!(unet[key], 8);
                continue;
            }
            assert_eq!(&unet[key], want, "{name} unet config `{key}`");
        }
    }
}

#[test]
fn the_built_in_clip_tokenizer_is_the_released_one() {
    let vocab = configs::clip_vocab();
    let released: std::collections::HashMap<String, u32> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tokenizer/clip-vit-l/vocab.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(vocab.len(), released.len());
    let wrong: Vec<_> = released
        .iter()
        .filter(|(t, id)| vocab.get(*t) != Some(id))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    let tokenizer = configs::clip_tokenizer(false).unwrap();
    assert_eq!(
        tokenizer.encode("a photo of a cat"),
        vec![320, 1125, 539, 320, 2368]
    );
    assert_eq!((tokenizer.bos_id(), tokenizer.eos_id()), (49406, 49407));
    let open_clip = configs::clip_tokenizer(true).unwrap();
    assert_eq!(open_clip.pad_id(), 0, "OpenCLIP pads with `!`");
    assert_eq!(tokenizer.pad_id(), 49407);
}

#[test]
fn a_turbo_config_folder_gives_a_single_file_turbo_defaults() {
    // Same architecture as tiny-sdxl-turbo: its trailing-spacing scheduler makes the file a Turbo model.
    let pipeline = load_file("tiny-sdxl.safetensors", with_config("tiny-sdxl-turbo"));
    assert_eq!(pipeline.info().default_steps, 1);
    assert_eq!(pipeline.info().default_guidance, 0.0);
    let plain = load_file("tiny-sdxl.safetensors", with_config("tiny-sdxl"));
    assert_eq!(plain.info().default_steps, 20);
}
