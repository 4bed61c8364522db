//! The OpenAI Images API in-process against the fake backend: every field of generations and edits, signed
//! URLs, streaming events in OpenAI's shapes, errors in OpenAI's shape, auth, queue limits and cancellation.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine as _;
use common::{app, app_with, parse_sse, TestApp};
use image::{DynamicImage, Rgba, RgbaImage};
use sd_engine::fake::FakeBackend;
use sd_engine::metadata::{read_parameters, Infotext};
use sd_engine::EngineConfig;
use sd_server::ServerConfig;
use serde_json::{json, Value};

fn b64_decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

async fn generate(app: &TestApp, body: Value) -> Value {
    let reply = app.post_json("/v1/images/generations", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// Asserts an OpenAI-shaped error and returns its `error` object.
fn openai_error(reply: &common::Reply, status: StatusCode) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some(), "{body}");
    assert!(error.get("code").is_some(), "{body}");
    error.clone()
}

#[tokio::test]
async fn generations_return_b64_pngs_with_a1111_metadata() {
    let app = app(Duration::ZERO).await;
    let body = generate(
        &app,
        json!({"prompt": "a lighthouse", "n": 3, "size": "64x72", "seed": 5, "model": "dall-e-3",
               "quality": "hd", "style": "vivid", "user": "someone", "steps": 4, "guidance_scale": 5,
               "negative_prompt": "fog", "sampler": "Euler a", "moderation": "low", "background": "auto"}),
    )
    .await;
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["output_format"], "png");
    assert_eq!(body["size"], "64x72");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["revised_prompt"], "a lighthouse");
        assert!(item.get("url").is_none());
        let png = b64_decode(item["b64_json"].as_str().unwrap());
        let seed = 5 + index as u64;
        let pixels = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(pixels, FakeBackend::image_for(seed, "a lighthouse", 64, 72));
        let infotext = Infotext::parse(&read_parameters(&png).unwrap());
        assert_eq!(infotext.prompt, "a lighthouse");
        assert_eq!(infotext.negative_prompt, "fog");
        assert_eq!(infotext.get("Seed"), Some(seed.to_string().as_str()));
        assert_eq!(infotext.get("Steps"), Some("4"));
        assert_eq!(infotext.get("CFG scale"), Some("5.0"));
        assert_eq!(infotext.get("Sampler"), Some("Euler a"));
        assert_eq!(infotext.get("Size"), Some("64x72"));
        assert_eq!(infotext.get("Model hash"), Some("fa4e0000f4"));
    }
}

#[tokio::test]
async fn size_auto_uses_the_model_default_and_n_above_the_batch_limit_is_split() {
    let server = ServerConfig {
        limits: sd_server::validate::Limits {
            max_batch: 4,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let app = app_with(Duration::ZERO, EngineConfig::default(), server).await;
    let body = generate(
        &app,
        json!({"prompt": "p", "n": 10, "size": "64x64", "seed": 1, "steps": 1}),
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 10);
    let jobs = app.get("/v1/jobs").await.json();
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        3,
        "10 images in jobs of 4, 4, 2"
    );
    let auto = generate(&app, json!({"prompt": "p", "size": "auto", "steps": 1})).await;
    assert_eq!(auto["size"], "512x512");
}

#[tokio::test]
async fn jpeg_and_webp_outputs_carry_the_infotext_in_exif() {
    let app = app(Duration::ZERO).await;
    for (format, magic) in [("jpeg", &b"\xff\xd8"[..]), ("webp", &b"RIFF"[..])] {
        let body = generate(
            &app,
            json!({"prompt": "a fox", "size": "64x64", "steps": 2, "output_format": format, "output_compression": 50}),
        )
        .await;
        assert_eq!(body["output_format"], format);
        let bytes = b64_decode(body["data"][0]["b64_json"].as_str().unwrap());
        assert!(bytes.starts_with(magic), "{format}");
        let text = read_parameters(&bytes).unwrap();
        assert!(text.starts_with("a fox\nSteps: 2, "), "{text}");
    }
}

#[tokio::test]
async fn url_responses_are_signed_and_served_without_the_key() {
    let server = ServerConfig {
        api_key: Some("k3y".into()),
        ..ServerConfig::default()
    };
    let app = app_with(Duration::ZERO, EngineConfig::default(), server).await;
    let reply = app
        .send(
            Request::post("/v1/images/generations")
                .header(header::AUTHORIZATION, "Bearer k3y")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::HOST, "worker.local:8600")
                .body(Body::from(
                    json!({"prompt": "p", "size": "64x64", "steps": 1, "n": 2, "response_format": "url",
                           "output_format": "jpeg", "output_compression": 80})
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let url = body["data"][1]["url"].as_str().unwrap().to_owned();
    assert!(body["data"][1].get("b64_json").is_none());
    let path = url.strip_prefix("http://worker.local:8600").unwrap();
    assert!(path.starts_with("/v1/images/files/"), "{path}");
    let image = app.get(path).await;
    assert_eq!(image.status, StatusCode::OK, "{}", image.text());
    assert_eq!(image.headers[header::CONTENT_TYPE], "image/jpeg");
    assert!(read_parameters(&image.body).unwrap().contains("Seed: "));
    let tampered = path.replace("signature=", "signature=00");
    let error = openai_error(&app.get(&tampered).await, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "invalid_signature");
    let unsigned = path.split('?').next().unwrap();
    openai_error(&app.get(unsigned).await, StatusCode::FORBIDDEN);
    let other_image = path.replacen("/1-q80.jpeg", "/0-q80.jpeg", 1);
    openai_error(&app.get(&other_image).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn invalid_requests_get_openai_errors_naming_the_parameter() {
    let app = app(Duration::ZERO).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"size": "64x64"}), "prompt"),
        (json!({"prompt": "  "}), "prompt"),
        (json!({"prompt": "p", "n": 0}), "n"),
        (json!({"prompt": "p", "n": 11}), "n"),
        (json!({"prompt": "p", "n": "two"}), "n"),
        (json!({"prompt": "p", "size": "big"}), "size"),
        (json!({"prompt": "p", "size": "65x64"}), "size"),
        (json!({"prompt": "p", "size": "64x99999"}), "size"),
        (
            json!({"prompt": "p", "response_format": "file"}),
            "response_format",
        ),
        (
            json!({"prompt": "p", "output_format": "gif"}),
            "output_format",
        ),
        (
            json!({"prompt": "p", "output_compression": 101}),
            "output_compression",
        ),
        (
            json!({"prompt": "p", "background": "transparent"}),
            "background",
        ),
        (
            json!({"prompt": "p", "stream": true, "partial_images": 4}),
            "partial_images",
        ),
        (json!({"prompt": "p", "steps": 0}), "steps"),
        (
            json!({"prompt": "p", "guidance_scale": 31}),
            "guidance_scale",
        ),
        (json!({"prompt": "p", "sampler": "DPM++ SDE"}), "sampler"),
        (json!({"prompt": "p", "seed": -5}), "seed"),
    ];
    for (body, param) in cases {
        let reply = app.post_json("/v1/images/generations", &body).await;
        let error = openai_error(&reply, StatusCode::BAD_REQUEST);
        assert_eq!(error["param"], param, "{body}: {error}");
        assert_eq!(error["type"], "invalid_request_error");
    }
    let malformed = app
        .send(
            Request::post("/v1/images/generations")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        openai_error(&malformed, StatusCode::BAD_REQUEST)["code"],
        "invalid_json"
    );
    let wrong_method = app.get("/v1/images/generations").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn auth_errors_are_openai_shaped_and_bearer_or_basic_pass() {
    let server = ServerConfig {
        api_key: Some("s3cret".into()),
        ..ServerConfig::default()
    };
    let app = app_with(Duration::ZERO, EngineConfig::default(), server).await;
    let request = |auth: Option<&str>| {
        let mut builder = Request::post("/v1/images/generations")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder
            .body(Body::from(
                json!({"prompt": "p", "size": "64x64", "steps": 1}).to_string(),
            ))
            .unwrap()
    };
    let error = openai_error(&app.send(request(None)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(error["code"], "invalid_api_key");
    assert_eq!(error["type"], "invalid_request_error");
    openai_error(
        &app.send(request(Some("Bearer nope"))).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(
        app.send(request(Some("Bearer s3cret"))).await.status,
        StatusCode::OK
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
    assert_eq!(
        app.send(request(Some(&format!("Basic {basic}"))))
            .await
            .status,
        StatusCode::OK
    );
    let models = app
        .send(Request::get("/v1/models").body(Body::empty()).unwrap())
        .await;
    openai_error(&models, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn models_lists_the_loaded_model() {
    let app = app(Duration::ZERO).await;
    let list = app.get("/v1/models").await.json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "fake");
    assert_eq!(list["data"][0]["object"], "model");
    assert_eq!(app.get("/v1/models/fake").await.json()["id"], "fake");
    let missing = app.get("/v1/models/dall-e-3").await;
    assert_eq!(
        openai_error(&missing, StatusCode::NOT_FOUND)["code"],
        "model_not_found"
    );
}

#[tokio::test]
async fn a_full_queue_is_a_429_with_retry_after() {
    let engine = EngineConfig {
        max_queue: 1,
        ..EngineConfig::default()
    };
    let app = app_with(Duration::from_millis(50), engine, ServerConfig::default()).await;
    let slow = json!({"operation": "image_generation", "prompt": "p", "width": 64, "height": 64, "steps": 40});
    let running = app.submit(slow.clone()).await;
    app.wait_status(&running, "running").await;
    app.submit(slow).await;
    let reply = app
        .post_json(
            "/v1/images/generations",
            &json!({"prompt": "p", "size": "64x64"}),
        )
        .await;
    let error = openai_error(&reply, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(reply.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn streaming_sends_partial_and_completed_events_in_openai_shapes() {
    let engine = EngineConfig {
        preview_interval: Some(Duration::ZERO),
        ..EngineConfig::default()
    };
    let app = app_with(Duration::from_millis(5), engine, ServerConfig::default()).await;
    let reply = app
        .post_json(
            "/v1/images/generations",
            &json!({"prompt": "p", "size": "64x64", "steps": 6, "n": 2, "stream": true,
                    "partial_images": 2, "output_format": "webp", "quality": "high"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers[header::CONTENT_TYPE], "text/event-stream");
    let events = parse_sse(&reply.text());
    let last = events.last().unwrap();
    assert_eq!(last.data, "[DONE]");
    let partials: Vec<Value> = events
        .iter()
        .filter(|event| event.event.as_deref() == Some("image_generation.partial_image"))
        .map(|event| event.json())
        .collect();
    let completed: Vec<Value> = events
        .iter()
        .filter(|event| event.event.as_deref() == Some("image_generation.completed"))
        .map(|event| event.json())
        .collect();
    assert_eq!(partials.len(), 2);
    assert_eq!(completed.len(), 2);
    for (index, partial) in partials.iter().enumerate() {
        assert_eq!(partial["type"], "image_generation.partial_image");
        assert_eq!(partial["partial_image_index"], index);
        for key in [
            "created_at",
            "size",
            "quality",
            "background",
            "output_format",
            "b64_json",
        ] {
            assert!(partial.get(key).is_some(), "{key} missing from {partial}");
        }
        let bytes = b64_decode(partial["b64_json"].as_str().unwrap());
        let preview = image::load_from_memory(&bytes).unwrap();
        assert_eq!((preview.width(), preview.height()), (64, 64));
    }
    for done in &completed {
        assert_eq!(done["type"], "image_generation.completed");
        assert_eq!(done["size"], "64x64");
        assert_eq!(done["quality"], "high");
        assert_eq!(done["output_format"], "webp");
        assert_eq!(done["usage"]["total_tokens"], 0);
        assert_eq!(done["usage"]["input_tokens_details"]["text_tokens"], 0);
        let bytes = b64_decode(done["b64_json"].as_str().unwrap());
        assert!(read_parameters(&bytes).unwrap().starts_with("p\nSteps: 6"));
    }
}

#[tokio::test]
async fn a_failing_generation_streams_an_error_event() {
    let app = app(Duration::ZERO).await;
    let reply = app
        .post_json(
            "/v1/images/generations",
            &json!({"prompt": "[fail]", "size": "64x64", "steps": 1, "stream": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = parse_sse(&reply.text());
    let error = events
        .iter()
        .find(|event| event.event.as_deref() == Some("error"))
        .unwrap();
    let body = error.json();
    assert_eq!(body["type"], "error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fake backend asked to fail"));
    let sync = app
        .post_json(
            "/v1/images/generations",
            &json!({"prompt": "[fail]", "size": "64x64", "steps": 1}),
        )
        .await;
    // The core refused the input: a 400 for OpenAI clients.
    let error = openai_error(&sync, StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "invalid_input");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_job() {
    let app = app(Duration::from_millis(20)).await;
    let router = app.router.clone();
    let request = Request::post("/v1/images/generations")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"prompt": "p", "size": "64x64", "steps": 100}).to_string(),
        ))
        .unwrap();
    let pending = tokio::spawn(async move {
        use tower::ServiceExt;
        router.oneshot(request).await
    });
    let id = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(job) = app
                .engine
                .jobs(10)
                .into_iter()
                .find(|job| job.status == sd_engine::JobStatus::Running)
            {
                return job.id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    pending.abort();
    app.wait_status(&id, "cancelled").await;
}

fn png_bytes(image: DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// One multipart part: (name, file name for files, content).
type Part<'a> = (&'a str, Option<&'a str>, Vec<u8>);

/// A multipart body of `parts`.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----sdworkerboundary7";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn edit(app: &TestApp, parts: &[Part<'_>]) -> common::Reply {
    let (content_type, body) = multipart(parts);
    app.send(
        Request::builder()
            .method(Method::POST)
            .uri("/v1/images/edits")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn text(name: &'static str, value: &str) -> Part<'static> {
    (name, None, value.as_bytes().to_vec())
}

#[tokio::test]
async fn edits_with_a_mask_inpaint_and_without_transform() {
    let app = app(Duration::ZERO).await;
    let picture = png_bytes(DynamicImage::new_rgb8(80, 64));
    let mut mask = RgbaImage::from_pixel(80, 64, Rgba([0, 0, 0, 255]));
    mask.put_pixel(10, 10, Rgba([0, 0, 0, 0]));
    let mask = png_bytes(DynamicImage::ImageRgba8(mask));
    let reply = edit(
        &app,
        &[
            ("image", Some("in.png"), picture.clone()),
            ("mask", Some("mask.png"), mask),
            text("prompt", "a red door"),
            text("n", "2"),
            text("seed", "9"),
            text("steps", "3"),
            text("model", "gpt-image-1"),
            text("input_fidelity", "high"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(
        body["size"], "80x64",
        "auto size keeps a small input's size"
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let png = b64_decode(body["data"][1]["b64_json"].as_str().unwrap());
    let infotext = Infotext::parse(&read_parameters(&png).unwrap());
    assert_eq!(infotext.get("Seed"), Some("10"));
    assert_eq!(infotext.get("Denoising strength"), Some("1.0"));
    let job = &app.get("/v1/jobs").await.json()["jobs"][0];
    assert_eq!(job["operation"], "image_inpaint");

    let reply = edit(
        &app,
        &[
            ("image[]", Some("in.png"), picture.clone()),
            text("prompt", "a blue door"),
            text("size", "64x64"),
            text("strength", "0.5"),
            text("response_format", "b64_json"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let png = b64_decode(reply.json()["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(
        Infotext::parse(&read_parameters(&png).unwrap()).get("Denoising strength"),
        Some("0.5")
    );
    let job = &app.get("/v1/jobs").await.json()["jobs"][0];
    assert_eq!(job["operation"], "image_transform");
}

#[tokio::test]
async fn edit_errors_name_the_parameter() {
    let app = app(Duration::ZERO).await;
    let picture = png_bytes(DynamicImage::new_rgb8(64, 64));
    let small_mask = png_bytes(DynamicImage::new_rgba8(32, 32));
    let cases: Vec<(Vec<Part<'_>>, &str)> = vec![
        (vec![text("prompt", "p")], "image"),
        (vec![("image", Some("a.png"), picture.clone())], "prompt"),
        (
            vec![
                ("image[]", Some("a.png"), picture.clone()),
                ("image[]", Some("b.png"), picture.clone()),
                text("prompt", "p"),
            ],
            "image",
        ),
        (
            vec![
                ("image", Some("a.png"), picture.clone()),
                ("mask", Some("m.png"), small_mask),
                text("prompt", "p"),
            ],
            "mask",
        ),
        (
            vec![
                ("image", Some("a.png"), b"not an image".to_vec()),
                text("prompt", "p"),
            ],
            "image",
        ),
        (
            vec![
                ("image", Some("a.png"), picture.clone()),
                text("prompt", "p"),
                text("n", "x"),
            ],
            "n",
        ),
        (
            vec![
                ("image", Some("a.png"), picture.clone()),
                text("prompt", "p"),
                text("strength", "2"),
            ],
            "strength",
        ),
        (
            vec![
                ("image", Some("a.png"), picture),
                text("prompt", "p"),
                text("size", "63x64"),
            ],
            "size",
        ),
    ];
    for (parts, param) in cases {
        let error = openai_error(&edit(&app, &parts).await, StatusCode::BAD_REQUEST);
        assert_eq!(error["param"], param, "{error}");
    }
    let not_multipart = app
        .post_json("/v1/images/edits", &json!({"prompt": "p"}))
        .await;
    openai_error(&not_multipart, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn edits_stream_image_edit_events() {
    let app = app(Duration::ZERO).await;
    let picture = png_bytes(DynamicImage::new_rgb8(64, 64));
    let reply = edit(
        &app,
        &[
            ("image", Some("in.png"), picture),
            text("prompt", "p"),
            text("stream", "true"),
            text("steps", "2"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let events = parse_sse(&reply.text());
    let completed = events
        .iter()
        .find(|event| event.event.as_deref() == Some("image_edit.completed"))
        .unwrap();
    assert_eq!(completed.json()["type"], "image_edit.completed");
}

#[tokio::test]
async fn native_job_images_carry_the_infotext() {
    let app = app(Duration::ZERO).await;
    let id = app
        .submit(
            json!({"operation": "image_generation", "prompt": "a bee", "width": 64, "height": 64,
                       "steps": 2, "seed": 3, "sampler": "dpmpp_2m_karras", "clip_skip": 2}),
        )
        .await;
    app.wait_status(&id, "succeeded").await;
    let png = app.get(&format!("/v1/jobs/{id}/images/0")).await;
    let text = read_parameters(&png.body).unwrap();
    assert_eq!(
        text,
        format!(
            "a bee\nSteps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3, Size: 64x64, \
             Model hash: fa4e0000f4, Model: fake, Clip skip: 2, Version: sd-worker v{}",
            env!("CARGO_PKG_VERSION")
        )
    );
}
