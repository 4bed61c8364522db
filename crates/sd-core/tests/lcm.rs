//! A guidance-distilled (LCM) UNet with `time_cond_proj_dim` against diffusers' LatentConsistencyModelPipeline
//! (tools/make_lcm_fixture.py): the guidance-scale embedding reaches the UNet's time embedding and no
//! classifier-free guidance runs, so two guidance scales each match their golden within 1/255.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use common::*;
use sd_core::pipeline::{GenerateRequest, StepControl};
use sd_core::schedulers::SamplerKind;
use serde_json::Value;

#[test]
fn lcm_with_a_guidance_embedding_matches_diffusers() {
    let dir = golden_dir("tiny-lcm");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let pipeline = load("tiny-lcm");
    let mut failures = Vec::new();
    for case in spec["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let request = GenerateRequest {
            prompt: case["prompt"].as_str().unwrap().into(),
            // Ignored, as diffusers ignores it: guidance is distilled into the UNet.
            negative_prompt: "blurry".into(),
            steps: case["steps"].as_u64().unwrap() as usize,
            guidance_scale: case["guidance_scale"].as_f64().unwrap(),
            width: 64,
            height: 64,
            sampler: Some(SamplerKind::Lcm),
            seeds: vec![case["seed"].as_u64().unwrap()],
            clip_skip: 1,
            init: None,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        };
        let out = pipeline
            .generate(&request, &mut |_| StepControl::Continue)
            .unwrap();
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

/// Progress counts the steps asked for: PNDM's extra UNet call and Heun's second-order calls are not steps.
#[test]
fn progress_shows_the_steps_asked_for() {
    let pipeline = load("tiny-sd1");
    for sampler in [SamplerKind::Pndm, SamplerKind::Heun, SamplerKind::Euler] {
        let request = GenerateRequest {
            prompt: "a cube".into(),
            negative_prompt: String::new(),
            steps: 5,
            guidance_scale: 7.5,
            width: 64,
            height: 64,
            sampler: Some(sampler),
            seeds: vec![1],
            clip_skip: 1,
            init: None,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        };
        let mut seen = Vec::new();
        pipeline
            .generate(&request, &mut |ev| {
                seen.push((ev.step, ev.total));
                StepControl::Continue
            })
            .unwrap();
        assert_eq!(seen.last(), Some(&(5, 5)), "{sampler:?}: {seen:?}");
        assert!(
            seen.iter().all(|&(_, total)| total == 5),
            "{sampler:?}: {seen:?}"
        );
    }
}
