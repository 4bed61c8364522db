//! Non-square sizes against diffusers (tools/make_nonsquare_goldens.py): 96x64, 64x96 and 128x64 on the tiny
//! SD 1.x, SD 2.x and SDXL fixtures, text-to-image with several samplers, img2img and inpainting, each within
//! 1/255 of diffusers' whole decode. The models run from copies whose VAE config says `sample_size: 32`
//! (4-latent tiles): the default `--vae-tiling auto` must still decode whole (the old rule tiled every image
//! over 4x the training area, i.e. all of these), and say so in the output.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::path::Path;

use common::*;
use sd_core::pipeline::{GenerateRequest, InitImage, Pipeline, StepControl, VaeTiling};
use sd_core::schedulers::SamplerKind;
use serde_json::Value;

/// `src` copied to `dst`, with `vae/config.json`'s `sample_size` set to `sample_size`.
fn copy_with_sample_size(src: &Path, dst: &Path, sample_size: u64) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_with_sample_size(&entry.path(), &to, sample_size);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let config = dst.join("vae/config.json");
    if config.is_file() {
        let mut value: Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        value["sample_size"] = sample_size.into();
        std::fs::write(&config, value.to_string()).unwrap();
    }
}

fn load_small_tiles(model: &str, tmp: &Path, tiling: VaeTiling) -> Pipeline {
    let dir = tmp.join(format!("{model}-{tiling:?}"));
    if !dir.exists() {
        copy_with_sample_size(&model_dir(model), &dir, 32);
    }
    let options = sd_core::pipeline::LoadOptions {
        vae_tiling: tiling,
        // The default budget of a small machine: far above what these decodes need.
        vae_memory_budget: Some(1 << 30),
        ..cpu_f32()
    };
    Pipeline::load(dir.to_str().unwrap(), &options).unwrap()
}

fn request(case: &Value, dir: &Path) -> GenerateRequest {
    let init = case["init_image"].as_str().map(|file| InitImage {
        image: image::open(dir.join(file)).unwrap().to_rgb8(),
        strength: case["strength"].as_f64().unwrap(),
        mask: case["mask_image"]
            .as_str()
            .map(|m| image::open(dir.join(m)).unwrap().to_luma8()),
        preserve_unmasked: false,
    });
    GenerateRequest {
        prompt: case["prompt"].as_str().unwrap().into(),
        negative_prompt: case["negative_prompt"].as_str().unwrap().into(),
        steps: case["steps"].as_u64().unwrap() as usize,
        guidance_scale: case["guidance_scale"].as_f64().unwrap(),
        width: case["width"].as_u64().unwrap() as usize,
        height: case["height"].as_u64().unwrap() as usize,
        sampler: Some(SamplerKind::parse(case["sampler"].as_str().unwrap()).unwrap()),
        seeds: vec![case["seed"].as_u64().unwrap()],
        clip_skip: 1,
        init,
        size_conditioning: Default::default(),
        prompt_syntax: Default::default(),
    }
}

#[test]
fn auto_vae_tiling_matches_diffusers_at_non_square_sizes_with_small_tiles() {
    let dir = golden_dir("nonsquare");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut pipelines: std::collections::HashMap<String, Pipeline> = Default::default();
    let mut failures = Vec::new();
    let cases = spec["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = case["model"].as_str().unwrap().to_string();
        let pipeline = pipelines
            .entry(model.clone())
            .or_insert_with(|| load_small_tiles(&model, tmp.path(), VaeTiling::Auto));
        let out = pipeline
            .generate(&request(case, &dir), &mut |_| StepControl::Continue)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!out.vae_tiled, "{name}: auto tiled a decode that fits");
        let expected = image::open(dir.join(case["png"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let diff = max_pixel_diff(out.images[0].as_raw(), expected.as_raw());
        eprintln!("{name}: max diff {diff}/255");
        if diff > 1 {
            failures.push(format!("{name}: {diff}/255"));
        }
    }
    assert!(failures.is_empty(), "differ from diffusers: {failures:?}");
}

/// `on` still tiles these sizes (and says so), and differs from diffusers' whole decode; `auto` under a budget
/// smaller than the decode's estimate tiles too.
#[test]
fn tiling_on_or_over_budget_is_reported() {
    let dir = golden_dir("nonsquare");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let case = &spec["cases"][0];
    let tmp = tempfile::tempdir().unwrap();
    let on = load_small_tiles("tiny-sd1", tmp.path(), VaeTiling::On);
    let out = on
        .generate(&request(case, &dir), &mut |_| StepControl::Continue)
        .unwrap();
    assert!(out.vae_tiled);
    let expected = image::open(dir.join(case["png"].as_str().unwrap()))
        .unwrap()
        .to_rgb8();
    assert!(max_pixel_diff(out.images[0].as_raw(), expected.as_raw()) > 1);

    let model = tmp.path().join("tiny-sd1-On");
    let options = sd_core::pipeline::LoadOptions {
        vae_tiling: VaeTiling::Auto,
        vae_memory_budget: Some(1024),
        ..cpu_f32()
    };
    let tight = Pipeline::load(model.to_str().unwrap(), &options).unwrap();
    let tiled = tight
        .generate(&request(case, &dir), &mut |_| StepControl::Continue)
        .unwrap();
    assert!(tiled.vae_tiled, "a decode over the budget must tile");
    assert_eq!(tiled.images[0].as_raw(), out.images[0].as_raw());
}
