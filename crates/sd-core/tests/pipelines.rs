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
    let spec: Value = serde_json::from_str(&text.replace("-Infinity", "null")).unwrap();
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
