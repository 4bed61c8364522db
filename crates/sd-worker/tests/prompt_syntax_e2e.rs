//! A1111 prompt syntax and textual-inversion embeddings end to end on the real binary: one prompt (weights,
//! prompt editing, `BREAK`, an embedding) gives the same image through `sd-worker generate`, the native job API,
//! A1111's txt2img and OpenAI's generations; each carries the prompt as given; the embedding routes list the
//! folder; `prompt_syntax: "plain"` reads the literal text and reports a truncation.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::Worker;
use serde_json::{json, Value};

const PROMPT: &str = "a photo of tinyemb riding an (astronaut:1.3) [cat:dog:0.5] BREAK on mars";
const NEGATIVE: &str = "blurry, low quality";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model() -> String {
    fixtures()
        .join("models/tiny-sd1-prompt")
        .to_string_lossy()
        .into_owned()
}

fn embeddings() -> String {
    fixtures()
        .join("embeddings/sd1")
        .to_string_lossy()
        .into_owned()
}

fn rgb(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn b64(text: &str) -> Vec<u8> {
    let text = text.rsplit(',').next().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

async fn native(worker: &Worker, extra: Value) -> (Value, Vec<u8>) {
    let mut body = json!({"operation": "image_generation", "prompt": PROMPT, "negative_prompt": NEGATIVE,
        "steps": 4, "seed": 42, "width": 64, "height": 64, "guidance_scale": 7.5, "sampler": "euler"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let id = common::submit(worker, &body).await;
    let job = common::wait_status(worker, &id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let png = reqwest::get(worker.url(&format!("/v1/jobs/{id}/images/0")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    (job, png.to_vec())
}

async fn post(worker: &Worker, path: &str, body: Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .post(worker.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap())
}

#[tokio::test]
async fn one_prompt_gives_one_image_on_every_route() {
    // The CLI.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.png");
    let run = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args([
            "generate",
            "--model",
            &model(),
            "--embeddings-dir",
            &embeddings(),
        ])
        .args([
            "--prompt",
            PROMPT,
            "--negative-prompt",
            NEGATIVE,
            "--steps",
            "4",
            "--seed",
            "42",
        ])
        .args([
            "--width",
            "64",
            "--height",
            "64",
            "--guidance",
            "7.5",
            "--sampler",
            "euler",
        ])
        .arg("--out")
        .arg(&out)
        .env("SD_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cli = rgb(&std::fs::read(&out).unwrap());

    let worker = Worker::start(&model(), &["--embeddings-dir", &embeddings()]);
    worker.wait_ready(Duration::from_secs(120)).await;

    // Native API: same image, the prompt as given in the result and in the PNG's parameters.
    let (job, png) = native(&worker, json!({})).await;
    assert_eq!(job["result"]["prompt"], PROMPT, "{job}");
    assert_eq!(job["result"]["negative_prompt"], NEGATIVE, "{job}");
    assert!(job["result"].get("warnings").is_none(), "{job}");
    let text = String::from_utf8_lossy(&png);
    assert!(
        text.contains(PROMPT),
        "the PNG's parameters lack the prompt as given"
    );
    let native_rgb = rgb(&png);
    assert_eq!(max_diff(&cli, &native_rgb), 0, "CLI vs native");

    // A1111 txt2img.
    let (status, a1111) = post(&worker, "/sdapi/v1/txt2img", json!({"prompt": PROMPT,
        "negative_prompt": NEGATIVE, "steps": 4, "seed": 42, "width": 64, "height": 64, "cfg_scale": 7.5,
        "sampler_name": "Euler"})).await;
    assert_eq!(status, 200, "{a1111}");
    let info: Value = serde_json::from_str(a1111["info"].as_str().unwrap()).unwrap();
    assert_eq!(info["prompt"], PROMPT);
    assert!(
        info["infotexts"][0].as_str().unwrap().starts_with(PROMPT),
        "{info}"
    );
    let a1111_rgb = rgb(&b64(a1111["images"][0].as_str().unwrap()));
    assert_eq!(max_diff(&cli, &a1111_rgb), 0, "CLI vs A1111");

    // OpenAI generations.
    let (status, openai) = post(
        &worker,
        "/v1/images/generations",
        json!({"prompt": PROMPT,
        "negative_prompt": NEGATIVE, "steps": 4, "seed": 42, "size": "64x64", "guidance_scale": 7.5,
        "sampler": "euler", "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(status, 200, "{openai}");
    let openai_rgb = rgb(&b64(openai["data"][0]["b64_json"].as_str().unwrap()));
    assert_eq!(max_diff(&cli, &openai_rgb), 0, "CLI vs OpenAI");

    // The syntax and the embedding took effect: the literal reading is another picture.
    let (plain, plain_png) = native(&worker, json!({"prompt_syntax": "plain"})).await;
    assert!(
        max_diff(&cli, &rgb(&plain_png)) > 20,
        "plain reading gave the same image"
    );
    assert!(plain["result"].get("warnings").is_none(), "{plain}");

    // A plain prompt past 77 tokens says so.
    let long = "a red house, green trees, ".repeat(20);
    let (job, _) = native(&worker, json!({"prompt_syntax": "plain", "prompt": long})).await;
    let warnings = job["result"]["warnings"].as_array().unwrap();
    assert!(warnings[0].as_str().unwrap().contains("truncated"), "{job}");
    let (job, _) = native(&worker, json!({"prompt": long})).await;
    assert!(job["result"].get("warnings").is_none(), "{job}");

    // A bad syntax name is a 422 naming the field.
    let (status, error) = post(
        &worker,
        "/v1/jobs",
        json!({"operation": "image_generation",
        "prompt": "x", "prompt_syntax": "comfy"}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "invalid_prompt_syntax");
    assert_eq!(error["error"]["field"], "prompt_syntax");

    // The embedding listings.
    let listed: Value = reqwest::get(worker.url("/sdapi/v1/embeddings"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["loaded"]["tinyemb"],
        json!({"step": null, "sd_checkpoint": null, "sd_checkpoint_name": null, "shape": 32, "vectors": 2})
    );
    assert_eq!(listed["skipped"]["wrongwidth"]["shape"], 7, "{listed}");
    let native_list: Value = reqwest::get(worker.url("/v1/embeddings"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        native_list["embeddings"],
        json!([{"name": "tinyemb", "vectors": 2, "shape": 32}])
    );
    assert_eq!(native_list["skipped"][0]["name"], "wrongwidth");
}

#[tokio::test]
async fn the_server_default_syntax_applies_to_a1111_requests() {
    let worker = Worker::start(
        &model(),
        &[
            "--embeddings-dir",
            &embeddings(),
            "--prompt-syntax",
            "plain",
        ],
    );
    worker.wait_ready(Duration::from_secs(120)).await;
    let (plain, plain_png) = native(&worker, json!({})).await;
    assert_eq!(plain["status"], "succeeded");
    let (a1111, a1111_png) = native(&worker, json!({"prompt_syntax": "a1111"})).await;
    assert_eq!(a1111["status"], "succeeded");
    assert!(max_diff(&rgb(&plain_png), &rgb(&a1111_png)) > 20);
    let (status, reply) = post(&worker, "/sdapi/v1/txt2img", json!({"prompt": PROMPT,
        "negative_prompt": NEGATIVE, "steps": 4, "seed": 42, "width": 64, "height": 64, "cfg_scale": 7.5,
        "sampler_name": "Euler"})).await;
    assert_eq!(status, 200, "{reply}");
    let got = rgb(&b64(reply["images"][0].as_str().unwrap()));
    assert_eq!(
        max_diff(&got, &rgb(&plain_png)),
        0,
        "A1111 route ignored --prompt-syntax plain"
    );
}
