//! Shared helpers for the golden tests: fixture paths, loading reference tensors, closeness checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use sd_core::pipeline::{DTypeSpec, DeviceSpec, LoadOptions, Pipeline};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn golden_dir(name: &str) -> PathBuf {
    fixtures().join("golden").join(name)
}

pub fn cpu_f32() -> LoadOptions {
    LoadOptions {
        device: DeviceSpec::Cpu,
        dtype: DTypeSpec::F32,
        ..LoadOptions::default()
    }
}

pub fn load(name: &str) -> Pipeline {
    let dir = model_dir(name);
    Pipeline::load(dir.to_str().expect("utf-8 path"), &cpu_f32())
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn golden(model: &str, file: &str) -> HashMap<String, Tensor> {
    let path = golden_dir(model).join(file);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn get<'a>(map: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    map.get(key)
        .unwrap_or_else(|| panic!("golden tensor `{key}` missing"))
}

/// max |a - b| / max |b|: the relative error the issue bounds intermediate tensors by.
pub fn relative_error(actual: &Tensor, expected: &Tensor) -> f32 {
    assert_eq!(actual.dims(), expected.dims(), "shape mismatch");
    let a = actual
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = expected
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tolerance: f32) {
    let err = relative_error(actual, expected);
    assert!(
        err <= tolerance,
        "{what}: relative error {err:e} > {tolerance:e}"
    );
}

/// Largest per-channel difference between two 8-bit images, in 1/255 units.
pub fn max_pixel_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "image sizes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// A golden `[N, H, W, 3]` float image in [0, 1] rounded as diffusers' numpy_to_pil does.
pub fn golden_images_u8(images: &Tensor) -> Vec<Vec<u8>> {
    let n = images.dim(0).unwrap();
    (0..n)
        .map(|i| {
            let v = images
                .get(i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            v.iter()
                .map(|x| (x * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect()
        })
        .collect()
}
