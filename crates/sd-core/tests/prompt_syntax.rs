//! A1111 prompt syntax and textual inversion against `tools/a1111_prompt_reference.py` (a Python reference of
//! A1111 1.10's parser, schedules, chunking and emphasis, fed to diffusers) and diffusers'
//! `load_textual_inversion`: parses and schedules exactly, text conditioning within 1e-4, images within 2/255.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::*;
use sd_core::pipeline::{GenerateRequest, LoadOptions, Pipeline, StepControl};
use sd_core::prompt::{parse_prompt_attention, prompt_schedule, EmbeddingStore, PromptSyntax};
use sd_core::schedulers::SamplerKind;
use serde_json::Value;

const MAX_DIFF: u8 = 2;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text = std::fs::read_to_string(golden_dir("a1111").join("cases.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn goldens() -> &'static HashMap<String, candle_core::Tensor> {
    static G: OnceLock<HashMap<String, candle_core::Tensor>> = OnceLock::new();
    G.get_or_init(|| golden("a1111", "goldens.safetensors"))
}

fn embeddings_dir(model: &str) -> std::path::PathBuf {
    fixtures()
        .join("embeddings")
        .join(if model == "tiny-sdxl" { "sdxl" } else { "sd1" })
}

fn load_with_embeddings(model: &str) -> Pipeline {
    let options = LoadOptions {
        embedding_dirs: vec![embeddings_dir(model)],
        ..cpu_f32()
    };
    Pipeline::load(model_dir(model).to_str().unwrap(), &options).unwrap()
}

fn request(case: &Value, syntax: PromptSyntax) -> GenerateRequest {
    GenerateRequest {
        prompt: case["prompt"].as_str().unwrap().into(),
        negative_prompt: case["negative_prompt"].as_str().unwrap().into(),
        steps: case["steps"].as_u64().unwrap() as usize,
        guidance_scale: case["guidance_scale"].as_f64().unwrap(),
        width: case["width"].as_u64().unwrap() as usize,
        height: case["height"].as_u64().unwrap() as usize,
        sampler: Some(SamplerKind::parse(case["sampler"].as_str().unwrap()).unwrap()),
        seeds: vec![case["seed"].as_u64().unwrap()],
        clip_skip: case["clip_skip"].as_u64().unwrap() as usize,
        init: None,
        size_conditioning: Default::default(),
        prompt_syntax: syntax,
    }
}

fn image_diff(pipeline: &Pipeline, req: &GenerateRequest, golden_key: &str) -> u8 {
    let out = pipeline
        .generate(req, &mut |_| StepControl::Continue)
        .unwrap();
    // The goldens hold diffusers' 8-bit images.
    let stored = get(goldens(), golden_key)
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let expected = golden_images_u8(&(stored / 255.0).unwrap());
    max_pixel_diff(out.images[0].as_raw(), &expected[0])
}

#[test]
fn attention_parses_as_a1111() {
    for case in spec()["parse"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ours = parse_prompt_attention(prompt);
        let theirs = case["parsed"].as_array().unwrap();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{prompt:?}: {ours:?} vs {theirs:?}"
        );
        for ((text, weight), t) in ours.iter().zip(theirs) {
            assert_eq!(text, t[0].as_str().unwrap(), "{prompt:?}");
            let w = t[1].as_f64().unwrap();
            assert!(
                (weight - w).abs() < 1e-12,
                "{prompt:?}: {text}: {weight} vs {w}"
            );
        }
    }
}

#[test]
fn schedules_match_a1111s_grammar() {
    for case in spec()["schedules"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let ours = prompt_schedule(prompt, steps);
        let theirs: Vec<(usize, String)> = case["schedule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[0].as_u64().unwrap() as usize,
                    e[1].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{prompt:?} in {steps} steps");
    }
}

fn check_model(model: &str) {
    let pipeline = load_with_embeddings(model);
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in spec()["cases"].as_array().unwrap() {
        if case["model"].as_str() != Some(model) {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let req = request(case, PromptSyntax::A1111);
        // Text conditioning, entry by entry of the schedule.
        let calls = req.steps * if name.starts_with("heun") { 2 } else { 1 };
        let ours = pipeline
            .prompt_conditioning(&req.prompt, PromptSyntax::A1111, calls, req.clip_skip)
            .unwrap();
        let ends: Vec<usize> = ours.iter().map(|e| e.end_at_step).collect();
        let want: Vec<usize> = case["positive_ends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ends, want, "{name}: schedule");
        for (k, entry) in ours.iter().enumerate() {
            let err = relative_error(
                &entry.context,
                get(goldens(), &format!("{name}.positive.{k}")),
            );
            if err > 1e-4 {
                failures.push(format!("{name}: context {k} relative error {err}"));
            }
            if let Some(pooled) = &entry.pooled {
                let err = relative_error(
                    pooled,
                    get(goldens(), &format!("{name}.positive_pooled.{k}")),
                );
                if err > 1e-4 {
                    failures.push(format!("{name}: pooled {k} relative error {err}"));
                }
            }
        }
        let diff = image_diff(&pipeline, &req, &format!("{name}.image"));
        eprintln!(
            "{model}/{name}: max diff {diff}/255 (plain reading differs by {})",
            case["plain_max_diff"]
        );
        if diff > MAX_DIFF {
            failures.push(format!("{name}: max pixel difference {diff}/255"));
        }
        // The syntax must matter on these fixtures, or the comparison proves nothing.
        if let Some(plain) = case["plain_max_diff"].as_u64() {
            assert!(
                plain > 20,
                "{name}: the A1111 reading is too close to the plain one ({plain})"
            );
        }
        ran += 1;
    }
    assert!(ran >= 4, "{model}: only {ran} cases");
    assert!(failures.is_empty(), "{model}:\n{}", failures.join("\n"));
}

#[test]
fn sd1_a1111_syntax_matches_the_reference() {
    check_model("tiny-sd1-prompt");
}

#[test]
fn sdxl_a1111_syntax_matches_the_reference() {
    check_model("tiny-sdxl");
}

#[test]
fn textual_inversion_matches_diffusers_load_textual_inversion() {
    for case in spec()["textual_inversion"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let pipeline = load_with_embeddings(model);
        let name = case["name"].as_str().unwrap();
        for syntax in [PromptSyntax::A1111, PromptSyntax::Plain] {
            let diff = image_diff(&pipeline, &request(case, syntax), &format!("{name}.image"));
            eprintln!("{name} ({syntax:?}): max diff {diff}/255");
            assert!(diff <= MAX_DIFF, "{name} ({syntax:?}): {diff}/255");
        }
    }
}

#[test]
fn embedding_folders_list_loaded_and_skipped_files() {
    let store = EmbeddingStore::load(&[embeddings_dir("tiny-sd1")], (32, None)).unwrap();
    let listing = store.listing();
    assert_eq!(listing.loaded.len(), 1);
    assert_eq!(
        (
            listing.loaded["tinyemb"].vectors,
            listing.loaded["tinyemb"].shape
        ),
        (2, 32)
    );
    assert_eq!(listing.skipped.len(), 1);
    assert_eq!(listing.skipped["wrongwidth"].shape, 7);
    let json = serde_json::to_value(&listing).unwrap();
    assert_eq!(
        json["loaded"]["tinyemb"],
        serde_json::json!({"step": null, "sd_checkpoint": null, "sd_checkpoint_name": null, "shape": 32, "vectors": 2})
    );
    let xl = EmbeddingStore::load(&[embeddings_dir("tiny-sdxl")], (32, Some(48))).unwrap();
    assert_eq!(xl.listing().loaded["tinyxl"].shape, 80);
    assert!(EmbeddingStore::load(&[fixtures().join("no-such-folder")], (32, None)).is_err());
}

#[test]
fn plain_prompts_warn_when_truncated_and_a1111_prompts_do_not() {
    let pipeline = load("tiny-sd1");
    let case = spec()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "two_chunks")
        .unwrap();
    let mut req = request(case, PromptSyntax::Plain);
    req.steps = 1;
    let out = pipeline
        .generate(&req, &mut |_| StepControl::Continue)
        .unwrap();
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("truncated"), "{:?}", out.warnings);
    req.prompt_syntax = PromptSyntax::A1111;
    let out = pipeline
        .generate(&req, &mut |_| StepControl::Continue)
        .unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}
