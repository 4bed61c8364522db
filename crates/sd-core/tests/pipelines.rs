//! Whole pipelines against diffusers' golden images: every scheduler, batches, no-CFG, odd sizes, one step,
//! img2img at several strengths, inpainting with 9- and 4-channel UNets. Each case reproduces diffusers'
//! image within 2/255 per channel (f32 on the CPU), with the seeds diffusers used.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use common::*;
use sd_core::pipeline::{GenerateRequest, InitImage, StepControl};
use sd_core::schedulers::SamplerKind;
use serde_json::Value;

const MAX_DIFF: u8 = 2;

fn run_cases(model: &str, filter: &dyn Fn(&Value) -> bool) -> usize {
    let dir = golden_dir(model);
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let spec: Value = serde_json::from_str(&text).unwrap();
    let pipeline = load(
        spec["model_dir"]
            .as_str()
            .map(|d| d.rsplit('/').next().unwrap_or(model))
            .unwrap_or(model),
    );
    let init_image = spec["init_image"]
        .as_str()
        .map(|p| image::open(dir.join(p)).unwrap().to_rgb8());
    let mask_image = spec["mask_image"]
        .as_str()
        .map(|p| image::open(dir.join(p)).unwrap().to_luma8());
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in spec["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| filter(c))
    {
        let name = case["name"].as_str().unwrap();
        let sampler = match case["sampler"].as_str().unwrap() {
            "default" => None,
            s => Some(SamplerKind::parse(s).unwrap()),
        };
        let init = match case["pipeline"].as_str().unwrap() {
            "txt2img" => None,
            kind => Some(InitImage {
                image: init_image.clone().expect("init image"),
                strength: case["strength"].as_f64().unwrap(),
                mask: (kind == "inpaint").then(|| mask_image.clone().expect("mask image")),
                preserve_unmasked: false,
            }),
        };
        let request = GenerateRequest {
            prompt: case["prompt"].as_str().unwrap().into(),
            negative_prompt: case["negative_prompt"].as_str().unwrap_or("").into(),
            steps: case["steps"].as_u64().unwrap() as usize,
            guidance_scale: case["guidance_scale"].as_f64().unwrap(),
            width: case["width"].as_u64().unwrap() as usize,
            height: case["height"].as_u64().unwrap() as usize,
            sampler,
            seeds: case["seeds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
                .collect(),
            clip_skip: 1,
            init,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        };
        let mut steps_seen = 0;
        let out = match pipeline.generate(&request, &mut |ev| {
            steps_seen = ev.step;
            StepControl::Continue
        }) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected = golden_images_u8(get(
            &golden(model, case["file"].as_str().unwrap()),
            "images",
        ));
        assert_eq!(out.images.len(), expected.len(), "{name}: image count");
        assert!(steps_seen > 0, "{name}: no step callback");
        for (i, (ours, theirs)) in out.images.iter().zip(&expected).enumerate() {
            let diff = max_pixel_diff(ours.as_raw(), theirs);
            eprintln!("{model}/{name}[{i}]: max diff {diff}/255");
            if diff > MAX_DIFF {
                failures.push(format!(
                    "{name}[{i}]: max pixel difference {diff}/255 > {MAX_DIFF}/255"
                ));
            }
        }
        ran += 1;
    }
    assert!(
        failures.is_empty(),
        "{model}: {} case(s) differ from diffusers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ran
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |c| c["pipeline"].as_str() == Some(kind)
}

#[test]
fn sd1_text_to_image_matches_diffusers_for_every_sampler() {
    assert!(run_cases("tiny-sd1", &is("txt2img")) >= 14);
}

#[test]
fn sd2_v_prediction_text_to_image_matches_diffusers() {
    assert!(run_cases("tiny-sd2", &is("txt2img")) >= 5);
}

#[test]
fn sd1_image_to_image_matches_diffusers() {
    assert!(run_cases("tiny-sd1", &is("img2img")) >= 7);
}

#[test]
fn inpainting_with_an_ordinary_unet_matches_diffusers() {
    assert!(run_cases("tiny-sd1", &is("inpaint")) >= 4);
}

#[test]
fn inpainting_with_a_nine_channel_unet_matches_diffusers() {
    assert!(run_cases("tiny-sd1-inpaint", &is("inpaint")) >= 4);
}

fn small_request(seeds: Vec<u64>) -> GenerateRequest {
    GenerateRequest {
        prompt: "a red cube".into(),
        negative_prompt: String::new(),
        steps: 6,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        sampler: Some(SamplerKind::EulerAncestral),
        seeds,
        clip_skip: 1,
        init: None,
        size_conditioning: Default::default(),
        prompt_syntax: Default::default(),
    }
}

#[test]
fn the_step_callback_sees_every_step_and_can_stop_the_run() {
    let pipeline = load("tiny-sd1");
    let mut seen = Vec::new();
    pipeline
        .generate(&small_request(vec![1]), &mut |ev| {
            seen.push((ev.step, ev.total));
            assert_eq!(ev.preview().unwrap().dimensions(), (8, 8));
            StepControl::Continue
        })
        .unwrap();
    assert_eq!(seen, (1..=6).map(|s| (s, 6)).collect::<Vec<_>>());

    let mut calls = 0;
    let result = pipeline.generate(&small_request(vec![1]), &mut |_| {
        calls += 1;
        if calls == 2 {
            StepControl::Stop
        } else {
            StepControl::Continue
        }
    });
    assert!(
        matches!(result, Err(sd_core::CoreError::Cancelled)),
        "stopping ends the run as cancelled"
    );
    assert_eq!(calls, 2, "no step runs after Stop");
}

#[test]
fn a_batch_image_equals_the_same_seed_alone() {
    // Each image owns its generator: image 1 of seeds [5, 6] is the image seed 6 gives alone.
    let pipeline = load("tiny-sd1");
    let batch = pipeline
        .generate(&small_request(vec![5, 6]), &mut |_| StepControl::Continue)
        .unwrap();
    let alone = pipeline
        .generate(&small_request(vec![6]), &mut |_| StepControl::Continue)
        .unwrap();
    assert_eq!(batch.seeds, vec![5, 6]);
    assert!(max_pixel_diff(batch.images[1].as_raw(), alone.images[0].as_raw()) <= 1);
    assert!(
        max_pixel_diff(batch.images[0].as_raw(), alone.images[0].as_raw()) > 2,
        "different seeds differ"
    );
}

#[test]
fn clip_skip_changes_the_image_and_bad_sizes_are_refused() {
    let pipeline = load("tiny-sd1");
    let base = pipeline
        .generate(&small_request(vec![3]), &mut |_| StepControl::Continue)
        .unwrap();
    let mut skipped = small_request(vec![3]);
    skipped.clip_skip = 2;
    let skipped = pipeline
        .generate(&skipped, &mut |_| StepControl::Continue)
        .unwrap();
    assert!(max_pixel_diff(base.images[0].as_raw(), skipped.images[0].as_raw()) > 2);
    let mut bad = small_request(vec![3]);
    bad.width = 60;
    let err = pipeline
        .generate(&bad, &mut |_| StepControl::Continue)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiples of 8"), "{err}");
}

#[test]
fn sdxl_text_to_image_matches_diffusers() {
    assert!(run_cases("tiny-sdxl", &is("txt2img")) >= 6);
}

#[test]
fn sdxl_image_to_image_matches_diffusers() {
    assert!(run_cases("tiny-sdxl", &is("img2img")) >= 4);
}

#[test]
fn sdxl_inpainting_matches_diffusers_with_both_unets() {
    assert!(run_cases("tiny-sdxl", &is("inpaint")) >= 2);
    assert!(run_cases("tiny-sdxl-inpaint", &is("inpaint")) >= 2);
}

#[test]
fn sdxl_turbo_matches_diffusers_in_one_and_four_steps() {
    assert!(run_cases("tiny-sdxl-turbo", &is("txt2img")) >= 2);
}
