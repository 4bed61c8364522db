//! `generate`'s options: boolean env vars in every spelling (`HF_HUB_OFFLINE=1`), checks that fail before the
//! model loads, `.jpg`/`.webp` outputs in their format with the A1111 parameters in EXIF, and the PNG
//! parameters saying when the VAE decoded in tiles.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-sd1")
}

fn generate(model: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .arg("generate")
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(["--prompt", "a red cube", "--steps", "2", "--seed", "1"])
        .args(args)
        .envs(env.iter().copied())
        .env("SD_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn boolean_env_vars_accept_1_0_yes_no() {
    let dir = tempfile::tempdir().unwrap();
    for (offline, flash) in [("1", "0"), ("yes", "no"), ("true", "false"), ("0", "1")] {
        let out = dir.path().join(format!("{offline}.png"));
        let run = generate(
            &tiny(),
            &out,
            &[],
            &[
                ("HF_HUB_OFFLINE", offline),
                ("SD_FLASH_ATTENTION", flash),
                ("SD_PRESERVE_UNMASKED", flash),
            ],
        );
        ok(&run);
        assert!(out.is_file());
    }
}

#[test]
fn bad_options_fail_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    // A model path that does not exist: an error about it would mean the load was attempted first.
    let missing = Path::new("/nonexistent/model");
    for (args, expected) in [
        (vec!["--width", "100"], "--width 100"),
        (vec!["--steps", "0"], "--steps"),
        (vec!["--strength", "1.5"], "--strength"),
    ] {
        let run = generate(missing, &dir.path().join("x.png"), &args, &[]);
        assert!(!run.status.success());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("/nonexistent/model"),
            "{args:?} loaded first: {stderr}"
        );
    }
    let run = generate(missing, &dir.path().join("x.gif"), &[], &[]);
    assert!(String::from_utf8_lossy(&run.stderr).contains(".gif"));
}

#[test]
fn jpeg_and_webp_outputs_are_what_their_names_say() {
    let dir = tempfile::tempdir().unwrap();
    for (name, magic) in [
        ("a.jpg", &b"\xff\xd8"[..]),
        ("a.webp", &b"RIFF"[..]),
        ("a.JPEG", &b"\xff\xd8"[..]),
    ] {
        let out = dir.path().join(name);
        ok(&generate(&tiny(), &out, &[], &[]));
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.starts_with(magic), "{name} is not in its format");
        let text = sd_engine::metadata::read_parameters(&bytes).expect("EXIF parameters");
        assert!(
            text.starts_with("a red cube") && text.contains("Steps: 2"),
            "{text}"
        );
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 64);
    }
}

#[test]
fn png_parameters_say_when_the_vae_decoded_in_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let params = |mode: &str| {
        let out = dir.path().join(format!("{mode}.png"));
        ok(&generate(
            &tiny(),
            &out,
            &["--width", "128", "--height", "96", "--vae-tiling", mode],
            &[],
        ));
        sd_engine::metadata::read_parameters(&std::fs::read(&out).unwrap()).unwrap()
    };
    assert!(params("on").contains("VAE tiled: True"));
    assert!(!params("auto").contains("VAE tiled"));
    // auto under a budget smaller than the decode needs tiles, and says so.
    let out = dir.path().join("tight.png");
    ok(&generate(
        &tiny(),
        &out,
        &[
            "--width",
            "128",
            "--height",
            "96",
            "--vae-memory-budget",
            "0.001M",
        ],
        &[],
    ));
    let text = sd_engine::metadata::read_parameters(&std::fs::read(&out).unwrap()).unwrap();
    assert!(text.contains("VAE tiled: True"), "{text}");
}
