//! `sd-worker serve --models-dir`: two tiny models (SD 1.x and SD 2.x) and a broken file in one folder.
//! Interleaved requests naming each model through the native, A1111 and OpenAI APIs give the very images that
//! model gives when it is the only one served; the broken file fails only the jobs that name it; unknown
//! names are refused with the list of models; with `--max-loaded-models 2` no model loads twice; A1111's
//! `POST options` changes the default model and `refresh-checkpoints` finds a model copied in later.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::{submit, wait_status, Worker};
use serde_json::{json, Value};

const MODELS: [&str; 2] = ["tiny-sd1", "tiny-sd2"];
const APIS: [&str; 3] = ["native", "a1111", "openai"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

/// A copy of a fixture folder (the library must not depend on symlinks).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn post(worker: &Worker, path: &str, body: &Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .post(worker.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(worker: &Worker, path: &str) -> Value {
    reqwest::get(worker.url(path))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn pixels(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

fn decode(b64: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap())
        .unwrap()
}

/// One image from `api` for `model` (`None`: name no model); returns the PNG.
async fn generate(worker: &Worker, api: &str, model: Option<&str>) -> Vec<u8> {
    match api {
        "native" => {
            let mut body = json!({"operation": "image_generation", "prompt": "a red square",
                "steps": 2, "width": 64, "height": 64, "seed": 7});
            if let Some(model) = model {
                body["model"] = json!(model);
            }
            let id = submit(worker, &body).await;
            let done = wait_status(worker, &id, &["succeeded", "failed"]).await;
            assert_eq!(done["status"], "succeeded", "{done}\n{}", worker.log());
            reqwest::get(worker.url(&format!("/v1/jobs/{id}/images/0")))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
        "a1111" => {
            let mut body = json!({"prompt": "a red square", "steps": 2, "width": 64,
                "height": 64, "seed": 7});
            if let Some(model) = model {
                // A1111 clients send the title with the file extension.
                body["override_settings"] =
                    json!({"sd_model_checkpoint": format!("{model}.safetensors")});
            }
            let (status, reply) = post(worker, "/sdapi/v1/txt2img", &body).await;
            assert_eq!(status, 200, "{reply}\n{}", worker.log());
            decode(&reply["images"][0])
        }
        _ => {
            let mut body = json!({"prompt": "a red square", "steps": 2, "size": "64x64",
                "seed": 7});
            body["model"] = json!(model.unwrap_or("dall-e-2"));
            let (status, reply) = post(worker, "/v1/images/generations", &body).await;
            assert_eq!(status, 200, "{reply}\n{}", worker.log());
            decode(&reply["data"][0]["b64_json"])
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn a_models_dir_serves_each_model_by_name_as_if_alone() {
    // What each model makes when it is the only one served, through each API.
    let mut alone: HashMap<(&str, &str), Vec<u8>> = HashMap::new();
    for model in MODELS {
        let worker = Worker::start(fixture(model).to_str().unwrap(), &[]);
        worker.wait_ready(Duration::from_secs(120)).await;
        for api in APIS {
            alone.insert((api, model), pixels(&generate(&worker, api, None).await));
        }
    }
    assert_ne!(
        alone[&("native", "tiny-sd1")],
        alone[&("native", "tiny-sd2")]
    );

    let dir = tempfile::tempdir().unwrap();
    for model in MODELS {
        copy_dir(&fixture(model), &dir.path().join(model));
    }
    // Sorted first, so the worker tries it at start, fails, and starts with tiny-sd1 instead.
    std::fs::write(
        dir.path().join("broken.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let worker = Worker::start(
        "",
        &[
            "--models-dir",
            dir.path().to_str().unwrap(),
            "--max-loaded-models",
            "2",
        ],
    );
    worker.wait_ready(Duration::from_secs(120)).await;

    let listing = get(&worker, "/v1/models").await;
    assert_eq!(listing["object"], "list", "{listing}");
    let ids: Vec<&str> = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["broken", "tiny-sd1", "tiny-sd2"], "{listing}");
    assert_eq!(listing["data"][1]["loaded"], true, "{listing}");
    assert_eq!(listing["data"][1]["default"], true, "{listing}");
    assert_eq!(listing["data"][1]["family"], "sd1", "{listing}");
    assert_eq!(listing["data"][2]["loaded"], false, "{listing}");
    assert_eq!(listing["data"][2]["family"], "sd2", "{listing}");

    // Interleaved: every API names every model, alternating models at each request.
    for round in 0..2 {
        for (index, api) in APIS.iter().enumerate() {
            let model = MODELS[(index + round) % 2];
            let image = pixels(&generate(&worker, api, Some(model)).await);
            assert!(
                image == alone[&(*api, model)],
                "{api} naming {model} differs from {model} alone"
            );
        }
    }
    // Two slots: each model loaded once (the broken file never loaded), both stay loaded.
    let metrics = reqwest::get(worker.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "sd_worker_model_loads_total"), 2.0);
    let listing = get(&worker, "/v1/models").await;
    assert_eq!(listing["data"][1]["loaded"], true, "{listing}");
    assert_eq!(listing["data"][2]["loaded"], true, "{listing}");
    let hash = listing["data"][2]["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 10, "{listing}");

    // The job records the model that made it; its PNG says so too.
    let id = submit(
        &worker,
        &json!({"operation": "image_generation", "prompt": "p", "steps": 1,
            "width": 64, "height": 64, "seed": 1, "model": "tiny-sd2"}),
    )
    .await;
    let done = wait_status(&worker, &id, &["succeeded"]).await;
    assert_eq!(done["result"]["model"], "tiny-sd2", "{done}");
    assert_eq!(done["result"]["model_hash"], hash.as_str(), "{done}");
    let png = reqwest::get(worker.url(&format!("/v1/jobs/{id}/images/0")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, info) = post(
        &worker,
        "/sdapi/v1/png-info",
        &json!({"image": base64::engine::general_purpose::STANDARD.encode(&png)}),
    )
    .await;
    assert_eq!(info["parameters"]["Model"], "tiny-sd2", "{info}");
    assert_eq!(info["parameters"]["Model hash"], hash.as_str(), "{info}");

    // The broken file fails the job that names it, with the load error; the others go on.
    let id = submit(
        &worker,
        &json!({"operation": "image_generation", "prompt": "p", "steps": 1,
            "width": 64, "height": 64, "seed": 1, "model": "broken"}),
    )
    .await;
    let failed = wait_status(&worker, &id, &["failed"]).await;
    assert_eq!(failed["error"]["code"], "model_load_failed", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broken"),
        "{failed}"
    );
    let after = pixels(&generate(&worker, "native", Some("tiny-sd1")).await);
    assert!(after == alone[&("native", "tiny-sd1")]);
    assert_eq!(get(&worker, "/ready").await["status"], "ready");

    // Unknown names are refused with the list of models, on every API.
    let (status, reply) = post(
        &worker,
        "/v1/jobs",
        &json!({"operation": "image_generation", "prompt": "p", "model": "nope"}),
    )
    .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["error"]["code"], "unknown_model", "{reply}");
    assert!(reply.to_string().contains("tiny-sd2"), "{reply}");
    let (status, reply) = post(
        &worker,
        "/sdapi/v1/txt2img",
        &json!({"prompt": "p", "override_settings": {"sd_model_checkpoint": "nope"}}),
    )
    .await;
    assert_eq!(status, 422, "{reply}");
    assert!(reply.to_string().contains("tiny-sd1"), "{reply}");
    let (status, reply) = post(
        &worker,
        "/v1/images/generations",
        &json!({"prompt": "p", "model": "nope"}),
    )
    .await;
    assert_eq!(status, 404, "{reply}");
    assert!(reply.to_string().contains("tiny-sd1"), "{reply}");

    // A1111's options change the default model for jobs that name none.
    let models = get(&worker, "/sdapi/v1/sd-models").await;
    assert_eq!(models.as_array().unwrap().len(), 3, "{models}");
    let title = models[2]["title"].as_str().unwrap().to_owned();
    assert_eq!(title, format!("tiny-sd2 [{hash}]"));
    let (status, reply) = post(
        &worker,
        "/sdapi/v1/options",
        &json!({"sd_model_checkpoint": title}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let options = get(&worker, "/sdapi/v1/options").await;
    assert_eq!(options["sd_model_checkpoint"], title.as_str(), "{options}");
    for api in APIS {
        let image = pixels(&generate(&worker, api, None).await);
        assert!(image == alone[&(api, "tiny-sd2")], "{api} default");
    }
    let (status, _) = post(
        &worker,
        "/sdapi/v1/options",
        &json!({"sd_model_checkpoint": "nope"}),
    )
    .await;
    assert_eq!(status, 422);

    // A model copied in later is found by refresh-checkpoints.
    copy_dir(&fixture("tiny-sd1"), &dir.path().join("later"));
    assert!(get(&worker, "/sdapi/v1/sd-models")
        .await
        .as_array()
        .unwrap()
        .iter()
        .all(|model| model["model_name"] != "later"));
    let (status, _) = post(&worker, "/sdapi/v1/refresh-checkpoints", &json!({})).await;
    assert_eq!(status, 200);
    let listing = get(&worker, "/v1/models").await;
    assert!(
        listing["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|model| model["id"] == "later"),
        "{listing}"
    );
    let image = pixels(&generate(&worker, "native", Some("later")).await);
    assert!(image == alone[&("native", "tiny-sd1")]);
}
