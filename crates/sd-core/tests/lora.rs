//! LoRA against diffusers: kohya and PEFT files (tools/make_lora_fixtures.py) applied through `<lora:...>`
//! tags match diffusers' load_lora_weights + fuse_lora(lora_scale=0.8) within 2/255; a LoCon (3x3 with
//! lora_mid, 1x1) file matches a direct weight merge; the base model afterwards is bit-identical.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use sd_core::adapters::LoraLibrary;
use sd_core::pipeline::{GenerateRequest, Pipeline, StepControl};

const PROMPT: &str = "a photo of an astronaut riding a horse";

fn request(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        negative_prompt: String::new(),
        steps: 4,
        guidance_scale: 7.5,
        width: 32,
        height: 32,
        sampler: None,
        seeds: vec![42],
        clip_skip: 1,
        init: None,
        size_conditioning: Default::default(),
        prompt_syntax: sd_core::prompt::PromptSyntax::Plain,
    }
}

fn run(pipe: &Pipeline, prompt: &str) -> (Vec<u8>, sd_core::adapters::AppliedLoras) {
    let out = pipe
        .generate(&request(prompt), &mut |_| StepControl::Continue)
        .unwrap_or_else(|e| panic!("{prompt}: {e}"));
    (out.images[0].as_raw().clone(), out.loras)
}

fn reference(name: &str) -> Vec<f32> {
    let map = common::golden("tiny-sd1", &format!("lora_{name}.safetensors"));
    common::get(&map, "images")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_diff(pixels: &[u8], reference: &[f32]) -> f32 {
    assert_eq!(pixels.len(), reference.len());
    pixels
        .iter()
        .zip(reference)
        .map(|(&p, &r)| (f32::from(p) / 255.0 - r).abs())
        .fold(0.0, f32::max)
}

#[test]
fn loras_match_diffusers_and_leave_the_base_model_bit_identical() {
    let mut pipe = common::load("tiny-sd1");
    pipe.set_lora_library(LoraLibrary::new(vec![common::fixtures()
        .join("loras")
        .join("tiny-sd1")]));
    let (before, applied) = run(&pipe, PROMPT);
    assert!(applied.loras.is_empty());
    assert!(max_diff(&before, &reference("base")) <= 2.0 / 255.0);
    for name in ["kohya_attn", "peft_attn", "locon_conv"] {
        let (image, applied) = run(&pipe, &format!("{PROMPT} <lora:{name}:0.8>"));
        let diff = max_diff(&image, &reference(name));
        assert!(diff <= 2.0 / 255.0, "{name}: max diff {diff}");
        assert_ne!(image, before, "{name} changed nothing");
        assert_eq!(applied.loras.len(), 1);
        assert_eq!(applied.loras[0].name, name);
        assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);
        let (after, _) = run(&pipe, PROMPT);
        assert_eq!(after, before, "{name}: base model not restored bit for bit");
    }
    // Two at once, then the same pair again (kept merged), then the base model.
    let pair = format!("{PROMPT} <lora:kohya_attn:0.5> <lora:locon_conv:0.3>");
    let (a, applied) = run(&pipe, &pair);
    assert_eq!(applied.loras.len(), 2);
    let (b, _) = run(&pipe, &pair);
    assert_eq!(a, b);
    assert_eq!(run(&pipe, PROMPT).0, before);
}

#[test]
fn a_lora_set_taken_off_and_put_back_from_kept_merged_weights_gives_the_same_images() {
    let mut pipe = common::load("tiny-sd1");
    pipe.set_lora_library(LoraLibrary::new(vec![common::fixtures()
        .join("loras")
        .join("tiny-sd1")]));
    // What GPUs do by default; the CPU merges again instead.
    pipe.keep_merged_loras(true);
    let pair = format!("{PROMPT} <lora:kohya_attn:0.5> <lora:locon_conv:0.3>");
    let (base, _) = run(&pipe, PROMPT);
    let (merged, _) = run(&pipe, &pair);
    assert_ne!(merged, base);
    for _ in 0..2 {
        assert_eq!(
            run(&pipe, PROMPT).0,
            base,
            "base model not restored bit for bit"
        );
        let (again, applied) = run(&pipe, &pair);
        assert_eq!(
            again, merged,
            "kept merged weights differ from a fresh merge"
        );
        assert_eq!(applied.loras.len(), 2);
    }
    // A different set after the kept one merges afresh and still restores the base model.
    let (single, _) = run(&pipe, &format!("{PROMPT} <lora:kohya_attn:0.8>"));
    assert!(max_diff(&single, &reference("kohya_attn")) <= 2.0 / 255.0);
    assert_eq!(run(&pipe, PROMPT).0, base);
    assert_eq!(run(&pipe, &pair).0, merged);
}

#[test]
fn unknown_lora_names_are_errors_listing_what_exists() {
    let mut pipe = common::load("tiny-sd1");
    pipe.set_lora_library(LoraLibrary::new(vec![common::fixtures()
        .join("loras")
        .join("tiny-sd1")]));
    let err = pipe
        .generate(&request("x <lora:nope:1>"), &mut |_| StepControl::Continue)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("kohya_attn"), "{err}");
}

#[test]
fn keys_that_match_no_layer_are_a_warning_in_the_result_when_the_rest_applied() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::fixtures()
        .join("loras")
        .join("tiny-sd1")
        .join("kohya_attn.safetensors");
    let bytes = std::fs::read(&source).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        file.tensors().into_iter().collect();
    // A module this model does not have, in the same format as the real ones.
    let (_, down) = tensors
        .iter()
        .find(|(k, _)| k.ends_with(".lora_down.weight"))
        .cloned()
        .unwrap();
    let (_, up) = tensors
        .iter()
        .find(|(k, _)| k.ends_with(".lora_up.weight"))
        .cloned()
        .unwrap();
    tensors.push(("lora_unet_no_such_block_proj.lora_down.weight".into(), down));
    tensors.push(("lora_unet_no_such_block_proj.lora_up.weight".into(), up));
    safetensors::serialize_to_file(tensors, None, &dir.path().join("stray.safetensors")).unwrap();

    let mut pipe = common::load("tiny-sd1");
    pipe.set_lora_library(LoraLibrary::new(vec![dir.path().to_path_buf()]));
    let out = pipe
        .generate(&request(&format!("{PROMPT} <lora:stray:0.8>")), &mut |_| {
            StepControl::Continue
        })
        .unwrap();
    assert_eq!(out.loras.loras.len(), 1, "the matching keys still applied");
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("stray") && w.contains("no_such_block")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn an_sdxl_lora_with_ldm_block_names_matches_diffusers() {
    // tools/make_sdxl_lora_fixture.py: kohya keys as real SDXL LoRAs write them (`lora_unet_input_blocks_4_1_...`).
    let mut pipe = common::load("tiny-sdxl");
    pipe.set_lora_library(LoraLibrary::new(vec![common::fixtures()
        .join("loras")
        .join("tiny-sdxl")]));
    let mut req = request(&format!("{PROMPT} <lora:sgm_kohya:0.8>"));
    (req.width, req.height) = (64, 64);
    req.guidance_scale = 5.0; // StableDiffusionXLPipeline's default
    let mut plain = req.clone();
    plain.prompt = PROMPT.into();
    let before = pipe
        .generate(&plain, &mut |_| StepControl::Continue)
        .unwrap();
    let out = pipe.generate(&req, &mut |_| StepControl::Continue).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let map = common::golden("tiny-sdxl", "lora_sgm_kohya.safetensors");
    let reference = common::get(&map, "images")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let base = common::golden("tiny-sdxl", "lora_base.safetensors");
    let base = common::get(&base, "images")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let base_diff = max_diff(before.images[0].as_raw(), &base);
    assert!(base_diff <= 2.0 / 255.0, "base max diff {base_diff}");
    let diff = max_diff(out.images[0].as_raw(), &reference);
    assert!(diff <= 2.0 / 255.0, "max diff {diff}");
    assert!(
        max_diff(out.images[0].as_raw(), &base) > 10.0 / 255.0,
        "the LoRA changed nothing"
    );
}

#[test]
fn sdxl_text_encoder_loras_apply_to_both_encoders() {
    // te_kohya.safetensors holds `lora_te1_*` and `lora_te2_*` modules only; its reference merges them into
    // both encoders' weights directly (tools/make_sdxl_lora_fixture.py).
    let mut pipe = common::load("tiny-sdxl");
    pipe.set_lora_library(LoraLibrary::new(vec![common::fixtures()
        .join("loras")
        .join("tiny-sdxl")]));
    let mut req = request(&format!("{PROMPT} <lora:te_kohya:0.8>"));
    (req.width, req.height) = (64, 64);
    req.guidance_scale = 5.0;
    let out = pipe.generate(&req, &mut |_| StepControl::Continue).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let map = common::golden("tiny-sdxl", "lora_te_kohya.safetensors");
    let reference = common::get(&map, "images")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let diff = max_diff(out.images[0].as_raw(), &reference);
    assert!(diff <= 2.0 / 255.0, "max diff {diff}");
}
