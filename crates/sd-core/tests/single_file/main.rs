//! Single-file checkpoints (original LDM layout, written by tools/make_single_file_fixtures.py from the tiny
//! diffusers fixtures): the same images as their folders, full-size key mapping, detection and refusals.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

#[path = "../common/mod.rs"]
mod common;
mod detection;

use std::path::PathBuf;

use common::{cpu_f32, fixtures, max_pixel_diff, model_dir};
use image::{GrayImage, RgbImage};
use sd_core::loader::single_file::{Checkpoint, Family};
use sd_core::pipeline::{GenerateRequest, InitImage, LoadOptions, Pipeline, StepControl};
use sd_core::schedulers::{PredictionType, SamplerKind};

fn single(name: &str) -> PathBuf {
    fixtures().join("single_file").join(name)
}

fn load_file(file: &str, options: LoadOptions) -> Pipeline {
    let path = single(file);
    Pipeline::load(path.to_str().unwrap(), &options)
        .unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

/// The tiny fixtures' configs are not the released ones (8 groups, 2 heads, a 1014-token vocabulary), so
/// their single files take configs from their folder, as diffusers' `from_single_file(config=...)`.
fn with_config(folder: &str) -> LoadOptions {
    LoadOptions {
        model_config: Some(model_dir(folder)),
        ..cpu_f32()
    }
}

/// A copy of a fixture folder with every weight in float16, to compare f16 single files with: both then
/// hold the same numbers.
fn f16_copy(name: &str, dtype: candle_core::DType) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_as(&model_dir(name), dir.path(), dtype);
    dir
}

/// Writes `path`'s floating-point tensors in `dtype` to `target`.
fn convert_file(path: &std::path::Path, target: &std::path::Path, dtype: candle_core::DType) {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let converted: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype().is_float() {
                t.to_dtype(dtype).unwrap()
            } else {
                t
            };
            (k, t)
        })
        .collect();
    candle_core::safetensors::save(&converted, target).unwrap();
}

fn copy_as(from: &std::path::Path, to: &std::path::Path, dtype: candle_core::DType) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_as(&path, &target, dtype);
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            convert_file(&path, &target, dtype);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn load_folder(name: &str) -> Pipeline {
    let half = [
        ("@f16", candle_core::DType::F16),
        ("@bf16", candle_core::DType::BF16),
    ];
    if let Some((base, dtype)) = half
        .iter()
        .find_map(|(s, d)| name.strip_suffix(s).map(|b| (b, *d)))
    {
        let dir = f16_copy(base, dtype);
        return Pipeline::load(dir.path().to_str().unwrap(), &cpu_f32()).unwrap();
    }
    common::load(name)
}

fn request(init: Option<InitImage>) -> GenerateRequest {
    GenerateRequest {
        prompt: "a red cube on a table".into(),
        negative_prompt: "blurry".into(),
        steps: 4,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        sampler: Some(SamplerKind::Euler),
        seeds: vec![7],
        clip_skip: 1,
        init,
        size_conditioning: Default::default(),
        prompt_syntax: Default::default(),
    }
}

fn init_image(mask: bool) -> InitImage {
    let image = RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    InitImage {
        image,
        strength: if mask { 1.0 } else { 0.6 },
        mask: mask.then(|| {
            GrayImage::from_fn(64, 64, |x, _| image::Luma([if x < 32 { 255 } else { 0 }]))
        }),
        preserve_unmasked: false,
    }
}

fn images(pipeline: &Pipeline, init: Option<InitImage>) -> Vec<u8> {
    let out = pipeline
        .generate(&request(init), &mut |_| StepControl::Continue)
        .unwrap();
    out.images[0].as_raw().clone()
}

/// txt2img, img2img and (for inpainting models) inpainting give the folder's images within 1/255.
fn same_images(folder: &str, file: &str, options: LoadOptions, inpaint: bool) {
    let a = load_folder(folder);
    let b = load_file(file, options);
    assert!(
        b.unused_tensors().iter().all(|(c, _)| c == "text_encoder"),
        "{:?}",
        b.unused_tensors()
    );
    let cases: Vec<Option<InitImage>> = if inpaint {
        vec![Some(init_image(true))]
    } else {
        vec![None, Some(init_image(false)), Some(init_image(true))]
    };
    for init in cases {
        let what = match &init {
            None => "txt2img",
            Some(i) if i.mask.is_some() => "inpainting",
            Some(_) => "img2img",
        };
        let diff = max_pixel_diff(&images(&a, init.clone()), &images(&b, init));
        assert!(diff <= 1, "{file} {what}: max pixel difference {diff}/255");
    }
}

#[test]
fn sd1_single_file_matches_its_folder() {
    same_images(
        "tiny-sd1",
        "tiny-sd1.safetensors",
        with_config("tiny-sd1"),
        false,
    );
}

#[test]
fn f16_single_file_without_vae_takes_a_single_file_vae() {
    let path = single("tiny-sd1-f16-novae.safetensors");
    let err = Pipeline::load(path.to_str().unwrap(), &with_config("tiny-sd1"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no VAE") && err.contains("--vae"), "{err}");
    let options = LoadOptions {
        vae: Some(single("tiny-sd1-vae.safetensors")),
        ..with_config("tiny-sd1")
    };
    same_images(
        "tiny-sd1@f16",
        "tiny-sd1-f16-novae.safetensors",
        options,
        false,
    );
}

#[test]
fn bf16_single_file_matches_its_folder_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny-sd1-bf16.safetensors");
    convert_file(
        &single("tiny-sd1.safetensors"),
        &file,
        candle_core::DType::BF16,
    );
    let st = Checkpoint::open(&file, None).unwrap();
    assert_eq!(st.family, Family::Sd1);
    same_images(
        "tiny-sd1@bf16",
        file.to_str().unwrap(),
        with_config("tiny-sd1"),
        false,
    );
}

#[test]
fn sd2_v_prediction_single_file_matches_its_folder() {
    // The v-prediction comes from the config folder here; without it, --prediction-type says so.
    same_images(
        "tiny-sd2",
        "tiny-sd2.safetensors",
        with_config("tiny-sd2"),
        false,
    );
    let pipeline = load_file("tiny-sd2.safetensors", with_config("tiny-sd2"));
    assert_eq!(pipeline.info().prediction_type, PredictionType::VPrediction);
    assert_eq!(pipeline.info().family, Family::Sd2);
}

#[test]
fn inpainting_single_file_matches_its_folder() {
    same_images(
        "tiny-sd1-inpaint",
        "tiny-sd1-inpaint.safetensors",
        with_config("tiny-sd1-inpaint"),
        true,
    );
}

#[test]
fn sdxl_single_file_matches_its_folder() {
    same_images(
        "tiny-sdxl",
        "tiny-sdxl.safetensors",
        with_config("tiny-sdxl"),
        false,
    );
    let pipeline = load_file("tiny-sdxl.safetensors", with_config("tiny-sdxl"));
    assert_eq!(pipeline.info().family, Family::Sdxl);
}

#[test]
fn sdxl_inpainting_f16_single_file_matches_its_folder() {
    same_images(
        "tiny-sdxl-inpaint@f16",
        "tiny-sdxl-inpaint-f16.safetensors",
        with_config("tiny-sdxl-inpaint"),
        true,
    );
}

#[test]
fn a_diffusers_layout_vae_file_replaces_the_vae() {
    let options = LoadOptions {
        vae: Some(model_dir("tiny-sd1").join("vae/diffusion_pytorch_model.safetensors")),
        ..with_config("tiny-sd1")
    };
    let a = load_folder("tiny-sd1");
    let b = load_file("tiny-sd1-f16-novae.safetensors", options);
    let c = load_file("tiny-sd1.safetensors", with_config("tiny-sd1"));
    // f16 UNet and text encoder against f32 ones: only the VAE is compared exactly, through the f32 file.
    assert!(max_pixel_diff(&images(&a, None), &images(&c, None)) <= 1);
    assert!(max_pixel_diff(&images(&b, None), &images(&c, None)) <= 8);
}

#[test]
fn a_file_without_text_encoders_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unet-and-vae.safetensors");
    let tensors =
        candle_core::safetensors::load(single("tiny-sd1.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let kept: std::collections::HashMap<_, _> = tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with("cond_stage_model."))
        .collect();
    candle_core::safetensors::save(&kept, &file).unwrap();
    // The tiny UNet's width (32) names no family: detection asks for --family.
    let err = Pipeline::load(file.to_str().unwrap(), &with_config("tiny-sd1")).err();
    assert!(err
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("--family"));
    let options = LoadOptions {
        family: Some(Family::Sd1),
        ..with_config("tiny-sd1")
    };
    let err = Pipeline::load(file.to_str().unwrap(), &options)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("unet-and-vae.safetensors") && err.contains("no text encoder"),
        "{err}"
    );
}

#[test]
fn pickles_are_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "model.ckpt",
        "model.pt",
        "model.pth",
        "model.bin",
        "zip.safetensors",
    ] {
        let path = dir.path().join(name);
        // A zip archive (what torch.save writes) whatever the extension says.
        std::fs::write(&path, b"PK\x03\x04 not really").unwrap();
        let err = Pipeline::load(path.to_str().unwrap(), &cpu_f32())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("pickle") && err.contains("arbitrary code") && err.contains("safetensors"),
            "{err}"
        );
    }
}

#[test]
fn unrecognised_files_name_the_file_and_what_is_missing() {
    let vae = single("tiny-sd1-vae.safetensors");
    let err = Pipeline::load(vae.to_str().unwrap(), &cpu_f32())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("tiny-sd1-vae.safetensors") && err.contains("--vae"),
        "{err}"
    );
    let err = Pipeline::load("models/missing.safetensors", &cpu_f32())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no such checkpoint file"), "{err}");
    let unet = model_dir("tiny-sd1").join("unet/diffusion_pytorch_model.safetensors");
    let err = Pipeline::load(unet.to_str().unwrap(), &cpu_f32())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("diffusers-layout"), "{err}");
}
