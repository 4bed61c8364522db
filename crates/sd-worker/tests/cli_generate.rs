//! `sd-worker generate` end to end: the real binary on the tiny fixture model reproduces diffusers' golden
//! images (within 2/255) for text-to-image, batches, img2img and inpainting, and fails clearly on bad input.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn golden_case(name: &str) -> serde_json::Value {
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("golden/tiny-sd1/cases.json")).unwrap(),
    )
    .unwrap();
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn generate(args: &[&str], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .arg("generate")
        .arg("--model")
        .arg(fixtures().join("models/tiny-sd1"))
        .arg("--out")
        .arg(out)
        .args(args)
        .env("SD_LOG", "warn")
        .output()
        .expect("run sd-worker")
}

/// Runs `generate` with `args`, asserts success and the output size, returns the RGB bytes.
fn generate_rgb(args: &[&str], out: &Path, size: (u32, u32)) -> Vec<u8> {
    let o = generate(args, out);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let img = image::open(out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), size);
    img.into_raw()
}

fn case_args(case: &serde_json::Value) -> Vec<String> {
    let mut args = vec![
        "--prompt".into(),
        case["prompt"].as_str().unwrap().to_string(),
        "--negative-prompt".into(),
        case["negative_prompt"].as_str().unwrap_or("").to_string(),
        "--steps".into(),
        case["steps"].to_string(),
        "--guidance".into(),
        case["guidance_scale"].to_string(),
        "--width".into(),
        case["width"].to_string(),
        "--height".into(),
        case["height"].to_string(),
        "--seed".into(),
        case["seeds"][0].to_string(),
        "--batch".into(),
        case["seeds"].as_array().unwrap().len().to_string(),
    ];
    if case["sampler"] != "default" {
        args.push("--sampler".into());
        args.push(case["sampler"].as_str().unwrap().to_string());
    }
    if let Some(strength) = case["strength"].as_f64() {
        args.push("--strength".into());
        args.push(strength.to_string());
        args.push("--init-image".into());
        args.push(fixtures().join("golden/init.png").display().to_string());
        if case["pipeline"] == "inpaint" {
            args.push("--mask".into());
            args.push(fixtures().join("golden/mask.png").display().to_string());
        }
    }
    args
}

fn max_diff(a: &Path, b: &Path) -> u8 {
    let a = image::open(a).unwrap().to_rgb8();
    let b = image::open(b).unwrap().to_rgb8();
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn check_case(name: &str) {
    let case = golden_case(name);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.png");
    let args = case_args(&case);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = generate(&args, &out);
    assert!(
        result.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let golden = fixtures()
        .join("golden/tiny-sd1")
        .join(case["png"].as_str().unwrap());
    let diff = max_diff(&out, &golden);
    assert!(
        diff <= 2,
        "{name}: CLI output differs from diffusers by {diff}/255"
    );
}

#[test]
fn generate_reproduces_diffusers_text_to_image() {
    check_case("txt2img_ddim");
    check_case("txt2img_euler_a");
}

#[test]
fn generate_writes_every_image_of_a_batch() {
    let case = golden_case("txt2img_batch2");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("batch.png");
    let args = case_args(&case);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = generate(&args, &out);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(out.is_file());
    assert!(
        tmp.path().join("batch-1.png").is_file(),
        "second image of the batch"
    );
    assert!(max_diff(&out, &fixtures().join("golden/tiny-sd1/txt2img_batch2.png")) <= 2);
}

#[test]
fn generate_reproduces_diffusers_img2img_and_inpainting() {
    check_case("img2img_ddim_s75");
    check_case("inpaint_ddim_s100");
}

#[test]
fn generate_fails_clearly_on_a_bad_model_path() {
    let tmp = tempfile::tempdir().unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args([
            "generate",
            "--model",
            "/nonexistent/model",
            "--prompt",
            "x",
            "--out",
        ])
        .arg(tmp.path().join("x.png"))
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("/nonexistent/model"), "{stderr}");
}

#[test]
fn generate_rejects_a_size_the_vae_cannot_take() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.png");
    let result = generate(
        &[
            "--prompt", "x", "--width", "60", "--height", "64", "--steps", "1",
        ],
        &out,
    );
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("multiples of 8"), "{stderr}");
}

#[test]
fn generated_pngs_carry_a1111_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("meta.png");
    let result = generate(
        &[
            "--prompt",
            "a red cube",
            "--negative-prompt",
            "blurry",
            "--steps",
            "3",
            "--seed",
            "42",
            "--sampler",
            "DPM++ 2M Karras",
        ],
        &out,
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let text = sd_engine::metadata::read_parameters(&bytes).expect("parameters chunk");
    let info = sd_engine::metadata::infotext::Infotext::parse(&text);
    assert_eq!(info.prompt, "a red cube");
    assert_eq!(info.negative_prompt, "blurry");
    assert_eq!(info.get("Steps"), Some("3"));
    assert_eq!(info.get("Seed"), Some("42"));
    assert_eq!(info.get("Sampler"), Some("DPM++ 2M"));
    assert_eq!(info.get("Schedule type"), Some("Karras"));
    assert_eq!(info.get("Size"), Some("64x64"));
    assert!(
        info.get("Model hash").is_some_and(|h| h.len() == 10),
        "{text}"
    );
}

fn generate_with(model: &str, args: &[&str], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .arg("generate")
        .arg("--model")
        .arg(fixtures().join("models").join(model))
        .arg("--out")
        .arg(out)
        .args(args)
        .env("SD_LOG", "warn")
        .output()
        .expect("run sd-worker")
}

#[test]
fn generate_reproduces_diffusers_sdxl_and_size_conditioning_reaches_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = fixtures().join("golden/tiny-sdxl");
    let base = [
        "--prompt",
        "a photo of an astronaut riding a horse on mars",
        "--steps",
        "8",
        "--guidance",
        "5",
        "--seed",
        "42",
    ];
    // An explicit negative prompt, Euler a (draws noise every step).
    let out = tmp.path().join("sdxl_euler_a.png");
    let mut args = base.to_vec();
    args.extend([
        "--negative-prompt",
        "blurry, low quality",
        "--sampler",
        "euler_a",
    ]);
    let result = generate_with("tiny-sdxl", &args, &out);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let diff = max_diff(&out, &golden.join("txt2img_euler_a.png"));
    assert!(
        diff <= 2,
        "SDXL euler_a differs from diffusers by {diff}/255"
    );
    // No negative prompt: SDXL conditions the unconditional half on zeros (force_zeros_for_empty_prompt).
    let plain = tmp.path().join("sdxl_no_negative.png");
    let result = generate_with("tiny-sdxl", &base, &plain);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let diff = max_diff(&plain, &golden.join("txt2img_no_negative.png"));
    assert!(
        diff <= 2,
        "SDXL without a negative prompt differs from diffusers by {diff}/255"
    );
    // Size conditioning changes what the UNet sees.
    let sized = tmp.path().join("sdxl_sized.png");
    let mut args = base.to_vec();
    args.extend(["--original-size", "256x512", "--crop-top-left", "16,32"]);
    let result = generate_with("tiny-sdxl", &args, &sized);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        max_diff(&plain, &sized) > 2,
        "original size / crop conditioning had no effect"
    );
}

/// `--vae-tiling on` decodes a picture larger than one VAE tile (the tiny VAE's is 64 px) in blended tiles:
/// a valid image of the asked size that differs from the whole decode (`off`), which `auto` keeps at this size.
#[test]
fn vae_tiling_flag_switches_between_tiled_and_whole_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let run = |mode: &str| {
        let out = dir.path().join(format!("{mode}.png"));
        let args = [
            "--prompt",
            "a red square",
            "--steps",
            "2",
            "--width",
            "128",
            "--height",
            "96",
            "--seed",
            "5",
            "--vae-tiling",
            mode,
        ];
        generate_rgb(&args, &out, (128, 96))
    };
    let (on, off, auto) = (run("on"), run("off"), run("auto"));
    assert_ne!(on, off, "tiled decoding must blend tiles, not decode whole");
    assert_eq!(
        auto, off,
        "auto tiles only images over 4x the training area"
    );
    let bad = generate(
        &["--prompt", "x", "--vae-tiling", "sometimes"],
        &dir.path().join("bad.png"),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("auto, on or off"));
}

/// `sd-worker bench` prints one JSON line with every timing, writes the image and the component outputs.
#[test]
fn bench_reports_timings_and_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (png, dump) = (
        dir.path().join("bench.png"),
        dir.path().join("outputs.safetensors"),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args([
            "bench",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "--repeats",
            "2",
            "--runs",
            "2",
        ])
        .arg("--model")
        .arg(fixtures().join("models/tiny-sd1"))
        .arg("--out")
        .arg(&png)
        .arg("--dump")
        .arg(&dump)
        .env("SD_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    for key in [
        "text_encode_ms",
        "unet_step_ms",
        "vae_decode_ms",
        "end_to_end_s",
        "load_s",
    ] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert_eq!(report["end_to_end_runs_s"].as_array().unwrap().len(), 2);
    assert_eq!(
        (report["width"].as_u64(), report["steps"].as_u64()),
        (Some(64), Some(2))
    );
    // CPU runs no fused kernels, so there is nothing to check.
    assert_eq!(report["kernel_checks"].as_array().unwrap().len(), 0);
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (64, 64));
    let tensors = std::fs::read(&dump).unwrap();
    let header = String::from_utf8_lossy(&tensors[8..tensors.len().min(4096)]).to_string();
    for name in ["context", "noise_pred", "pixels"] {
        assert!(header.contains(name), "{name} missing from {header}");
    }
}

/// Image-to-image with tiling on (tiled encode of the init picture, tiled decode; both checked against diffusers
/// in sd-core's model tests) runs end to end and differs from the untiled run.
#[test]
fn vae_tiling_applies_to_the_init_image_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.png");
    image::imageops::resize(
        &image::open(fixtures().join("golden/init.png"))
            .unwrap()
            .to_rgb8(),
        128,
        96,
        image::imageops::FilterType::Triangle,
    )
    .save(&init)
    .unwrap();
    let run = |mode: &str| {
        let out = dir.path().join(format!("i2i-{mode}.png"));
        let args = [
            "--prompt",
            "a red square",
            "--steps",
            "4",
            "--strength",
            "0.5",
            "--seed",
            "3",
            "--init-image",
            init.to_str().unwrap(),
            "--vae-tiling",
            mode,
        ];
        generate_rgb(&args, &out, (128, 96))
    };
    assert_ne!(run("on"), run("off"));
}
