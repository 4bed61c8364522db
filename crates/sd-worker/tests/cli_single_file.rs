//! `sd-worker generate --model FILE.safetensors`: a single-file checkpoint in the original layout gives the
//! image its diffusers folder gives, and the PNG names the file and its A1111 hash.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn generate(model: &Path, env: &[(&str, PathBuf)], out: &Path) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sd-worker"));
    command
        .arg("generate")
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(["--prompt", "a red cube", "--steps", "3", "--seed", "42"])
        .env("SD_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run sd-worker")
}

#[test]
fn a_single_file_generates_its_folders_image_and_names_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let (from_folder, from_file) = (tmp.path().join("folder.png"), tmp.path().join("file.png"));
    let folder = fixtures().join("models/tiny-sd1");
    let o = generate(&folder, &[], &from_folder);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The tiny model's configs are not SD 1.5's: the env var points the file at its folder's configs.
    let file = fixtures().join("single_file/tiny-sd1.safetensors");
    let o = generate(&file, &[("SD_MODEL_CONFIG", folder)], &from_file);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (
        image::open(&from_folder).unwrap().to_rgb8(),
        image::open(&from_file).unwrap().to_rgb8(),
    );
    let diff = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max();
    assert!(diff.unwrap_or(0) <= 1, "max difference {diff:?}");
    let text = sd_engine::metadata::read_parameters(&std::fs::read(&from_file).unwrap()).unwrap();
    let info = sd_engine::metadata::infotext::Infotext::parse(&text);
    // sha256 of the file, first 10 hex digits, as A1111 computes it.
    assert_eq!(info.get("Model hash"), Some("3e12317cd6"), "{text}");
    assert_eq!(info.get("Model"), Some("tiny-sd1"), "{text}");
}

#[test]
fn pickles_are_refused_with_how_to_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("model.ckpt");
    std::fs::write(&ckpt, b"PK\x03\x04").unwrap();
    let o = generate(&ckpt, &[], &tmp.path().join("x.png"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("model.ckpt") && err.contains("arbitrary code") && err.contains("safetensors"),
        "{err}"
    );
}
