//! One LoRA through every door: `sd-worker generate --lora-dir DIR --prompt "... <lora:NAME:0.8>"`, the
//! native API (tag, and the `loras` field), the A1111 and the OpenAI routes give the same image; the lists
//! and the unknown-name error; PNG metadata carries `Lora hashes`.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use common::{tiny_model, Worker};
use serde_json::{json, Value};

fn lora_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/loras/tiny-sd1")
        .display()
        .to_string()
}

const PROMPT: &str = "a photo of an astronaut riding a horse";

fn rgb(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

async fn post(worker: &Worker, path: &str, body: &Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .post(worker.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap())
}

async fn native(worker: &Worker, body: Value) -> Vec<u8> {
    let id = common::submit(worker, &body).await;
    let job = common::wait_status(worker, &id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let png = reqwest::get(worker.url(&format!("/v1/jobs/{id}/images/0")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    png.to_vec()
}

#[tokio::test]
async fn the_same_lora_gives_the_same_image_on_every_route() {
    let out = std::env::temp_dir().join(format!("sd-lora-cli-{}.png", std::process::id()));
    let tagged = format!("{PROMPT} <lora:kohya_attn:0.8>");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args([
            "generate",
            "--model",
            &tiny_model(),
            "--lora-dir",
            &lora_dir(),
        ])
        .args(["--prompt", &tagged, "--steps", "4", "--seed", "42"])
        .args([
            "--width",
            "64",
            "--height",
            "64",
            "--sampler",
            "euler",
            "--guidance",
            "7.5",
        ])
        .arg("--out")
        .arg(&out)
        .env("SD_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli_png = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).ok();
    let cli_rgb = rgb(&cli_png);
    let text = String::from_utf8_lossy(&cli_png).to_string();
    assert!(text.contains("Lora hashes"), "no Lora hashes in the PNG");

    let worker = Worker::start(&tiny_model(), &["--lora-dir", &lora_dir()]);
    worker.wait_ready(Duration::from_secs(120)).await;

    let list: Value = reqwest::get(worker.url("/v1/loras"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["loras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kohya_attn", "locon_conv", "peft_attn"]);
    let a1111: Value = reqwest::get(worker.url("/sdapi/v1/loras"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a1111[0]["name"], "kohya_attn");

    let base = json!({"operation": "image_generation", "steps": 4, "seed": 42, "width": 64, "height": 64,
                      "sampler": "euler", "guidance_scale": 7.5});
    let mut body = base.clone();
    body["prompt"] = json!(tagged);
    assert_eq!(rgb(&native(&worker, body).await), cli_rgb, "native tag");
    let mut body = base.clone();
    body["prompt"] = json!(PROMPT);
    body["loras"] = json!([{"name": "kohya_attn", "weight": 0.8}]);
    assert_eq!(
        rgb(&native(&worker, body).await),
        cli_rgb,
        "native loras field"
    );

    let (status, reply) = post(
        &worker,
        "/sdapi/v1/txt2img",
        &json!({"prompt": tagged, "steps": 4, "seed": 42,
        "width": 64, "height": 64, "sampler_name": "Euler", "cfg_scale": 7.5}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(reply["images"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(rgb(&png), cli_rgb, "a1111");
    assert!(
        reply["info"].as_str().unwrap().contains("Lora hashes"),
        "{}",
        reply["info"]
    );

    let (status, reply) = post(&worker, "/v1/images/generations", &json!({"prompt": tagged, "steps": 4,
        "seed": 42, "size": "64x64", "sampler": "euler", "guidance_scale": 7.5, "response_format": "b64_json"})).await;
    assert_eq!(status, 200, "{reply}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(reply["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(rgb(&png), cli_rgb, "openai");

    let mut body = base.clone();
    body["prompt"] = json!(format!("{PROMPT} <lora:missing:1>"));
    let (status, reply) = post(&worker, "/v1/jobs", &body).await;
    assert_eq!(status, 422, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("missing") && message.contains("peft_attn"),
        "{message}"
    );
    assert_eq!(reply["error"]["code"], "unknown_lora");
}
