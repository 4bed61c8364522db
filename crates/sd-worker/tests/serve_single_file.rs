//! `sd-worker serve --model FILE.safetensors`: the real binary serves a single-file checkpoint; A1111's
//! checkpoint listing and the job result name the file and its A1111 hash.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{submit, wait_status, Worker};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[tokio::test]
async fn a_single_file_is_served_under_its_file_name_and_hash() {
    let file = fixtures().join("single_file/tiny-sd1.safetensors");
    let config = fixtures().join("models/tiny-sd1");
    let worker = Worker::start(
        file.to_str().unwrap(),
        &["--model-config", config.to_str().unwrap()],
    );
    worker.wait_ready(Duration::from_secs(120)).await;
    let models: Value = reqwest::get(worker.url("/sdapi/v1/sd-models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        models[0]["title"], "tiny-sd1.safetensors [3e12317cd6]",
        "{models}"
    );
    assert_eq!(models[0]["model_name"], "tiny-sd1", "{models}");
    let id = submit(
        &worker,
        &json!({"operation": "image_generation", "prompt": "a red square", "steps": 2,
        "width": 64, "height": 64, "seed": 7}),
    )
    .await;
    let job = wait_status(&worker, &id, &["succeeded"]).await;
    assert_eq!(job["result"]["model"], "tiny-sd1", "{job}");
    assert_eq!(job["result"]["model_hash"], "3e12317cd6", "{job}");
}
