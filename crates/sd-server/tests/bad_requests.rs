//! A table of bad requests, each with its expected status and error code (and field, where there is one).
//! None of them may queue a job or disturb the worker.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::io::Cursor;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine as _;
use common::app_with;
use sd_engine::EngineConfig;
use sd_server::validate::Limits;
use sd_server::ServerConfig;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
}

fn png(width: u32, height: u32) -> String {
    let mut bytes = Vec::new();
    image::RgbImage::new(width, height)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An all-white PNG: a mask that repaints everything.
fn white_png(width: u32, height: u32) -> String {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]))
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn with(fields: Value) -> String {
    let mut body =
        json!({"operation": "image_generation", "prompt": "a cat", "width": 64, "height": 64});
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body.to_string()
}

fn transform(fields: Value) -> String {
    let mut body: Value = serde_json::from_str(&with(
        json!({"operation": "image_transform", "input_image": png(64, 64)}),
    ))
    .unwrap();
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() {
            body.as_object_mut().unwrap().remove(key);
        } else {
            body[key] = value.clone();
        }
    }
    body.to_string()
}

fn post(
    name: &'static str,
    body: String,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        method: Method::POST,
        path: "/v1/jobs",
        content_type: Some("application/json"),
        body,
        status,
        code,
        field,
    }
}

fn invalid(name: &'static str, body: String, code: &'static str, field: &'static str) -> Case {
    post(
        name,
        body,
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        Some(field),
    )
}

fn other(
    name: &'static str,
    method: Method,
    path: &'static str,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        content_type: None,
        body: String::new(),
        status,
        code,
        field: None,
    }
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let long = "x".repeat(8193);
    let full_png = base64::engine::general_purpose::STANDARD
        .decode(png(64, 64))
        .unwrap();
    let truncated =
        base64::engine::general_purpose::STANDARD.encode(&full_png[..full_png.len() / 2]);
    vec![
        post(
            "empty body",
            String::new(),
            S::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        post(
            "not JSON",
            "prompt=cat".into(),
            S::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        post(
            "truncated JSON",
            "{\"operation\":".into(),
            S::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        post(
            "JSON array",
            "[1,2]".into(),
            S::UNPROCESSABLE_ENTITY,
            "invalid_type",
            None,
        ),
        post(
            "JSON string",
            "\"cat\"".into(),
            S::UNPROCESSABLE_ENTITY,
            "invalid_type",
            None,
        ),
        invalid(
            "missing operation",
            with(json!({"operation": null})),
            "missing_field",
            "operation",
        ),
        invalid(
            "unknown operation",
            with(json!({"operation": "video"})),
            "invalid_operation",
            "operation",
        ),
        invalid(
            "operation not a string",
            with(json!({"operation": 3})),
            "invalid_operation",
            "operation",
        ),
        invalid(
            "missing prompt",
            with(json!({"prompt": null})),
            "missing_field",
            "prompt",
        ),
        invalid(
            "empty prompt",
            with(json!({"prompt": ""})),
            "empty_prompt",
            "prompt",
        ),
        invalid(
            "blank prompt",
            with(json!({"prompt": "  \n "})),
            "empty_prompt",
            "prompt",
        ),
        invalid(
            "prompt not a string",
            with(json!({"prompt": 5})),
            "invalid_type",
            "prompt",
        ),
        invalid(
            "prompt too long",
            with(json!({"prompt": long})),
            "prompt_too_long",
            "prompt",
        ),
        invalid(
            "negative prompt too long",
            with(json!({"negative_prompt": "y".repeat(8193)})),
            "prompt_too_long",
            "negative_prompt",
        ),
        invalid(
            "zero steps",
            with(json!({"steps": 0})),
            "invalid_steps",
            "steps",
        ),
        invalid(
            "too many steps",
            with(json!({"steps": 151})),
            "invalid_steps",
            "steps",
        ),
        invalid(
            "negative steps",
            with(json!({"steps": -5})),
            "invalid_steps",
            "steps",
        ),
        invalid(
            "steps as text",
            with(json!({"steps": "ten"})),
            "invalid_type",
            "steps",
        ),
        invalid(
            "fractional steps",
            with(json!({"steps": 2.5})),
            "invalid_type",
            "steps",
        ),
        invalid(
            "negative guidance",
            with(json!({"guidance_scale": -1})),
            "invalid_guidance",
            "guidance_scale",
        ),
        invalid(
            "guidance too high",
            with(json!({"guidance_scale": 30.5})),
            "invalid_guidance",
            "guidance_scale",
        ),
        invalid(
            "guidance as text",
            with(json!({"guidance_scale": "high"})),
            "invalid_type",
            "guidance_scale",
        ),
        invalid(
            "width not a multiple of 8",
            with(json!({"width": 500})),
            "invalid_size",
            "width",
        ),
        invalid(
            "height too small",
            with(json!({"height": 32})),
            "invalid_size",
            "height",
        ),
        invalid(
            "width too large",
            with(json!({"width": 4096})),
            "invalid_size",
            "width",
        ),
        invalid(
            "negative height",
            with(json!({"height": -64})),
            "invalid_size",
            "height",
        ),
        invalid(
            "over the pixel budget",
            with(json!({"width": 2048, "height": 2048, "batch": 2})),
            "too_many_pixels",
            "width",
        ),
        invalid(
            "zero images",
            with(json!({"batch": 0})),
            "invalid_batch",
            "batch",
        ),
        invalid(
            "too many images",
            with(json!({"num_images": 9})),
            "invalid_batch",
            "batch",
        ),
        invalid(
            "seed below -1",
            with(json!({"seed": -2})),
            "invalid_seed",
            "seed",
        ),
        invalid(
            "seed beyond u64",
            with(json!({})).replace("\"prompt\"", "\"seed\":18446744073709551616,\"prompt\""),
            "invalid_type",
            "seed",
        ),
        invalid(
            "seed as text",
            with(json!({"seed": "abc"})),
            "invalid_type",
            "seed",
        ),
        invalid(
            "unknown sampler",
            with(json!({"sampler": "bogus"})),
            "unknown_sampler",
            "sampler",
        ),
        invalid(
            "sampler not a string",
            with(json!({"sampler": 5})),
            "invalid_type",
            "sampler",
        ),
        invalid(
            "clip skip zero",
            with(json!({"clip_skip": 0})),
            "invalid_clip_skip",
            "clip_skip",
        ),
        invalid(
            "strength on generation",
            with(json!({"strength": 0.5})),
            "unexpected_field",
            "strength",
        ),
        invalid(
            "input image on generation",
            with(json!({"input_image": png(8, 8)})),
            "unexpected_field",
            "input_image",
        ),
        invalid(
            "transform without an image",
            transform(json!({"input_image": null})),
            "missing_field",
            "input_image",
        ),
        invalid(
            "transform with an empty image",
            transform(json!({"input_image": ""})),
            "missing_field",
            "input_image",
        ),
        invalid(
            "strength above 1",
            transform(json!({"strength": 1.5})),
            "invalid_strength",
            "strength",
        ),
        invalid(
            "negative strength",
            transform(json!({"strength": -0.1})),
            "invalid_strength",
            "strength",
        ),
        invalid(
            "image not base64",
            transform(json!({"input_image": "%%%not base64%%%"})),
            "invalid_base64",
            "input_image",
        ),
        invalid(
            "image not an image",
            transform(
                json!({"input_image": base64::engine::general_purpose::STANDARD.encode("hello world")}),
            ),
            "invalid_image",
            "input_image",
        ),
        invalid(
            "truncated PNG",
            transform(json!({"input_image": truncated})),
            "invalid_image",
            "input_image",
        ),
        invalid(
            "image wider than the limit",
            transform(json!({"input_image": png(4104, 8), "width": 64, "height": 64})),
            "image_too_large",
            "input_image",
        ),
        invalid(
            "mask on transform",
            transform(json!({"mask_image": png(64, 64)})),
            "unexpected_field",
            "mask_image",
        ),
        invalid(
            "inpaint without a mask",
            transform(
                json!({"operation": "image_inpaint", "input_image": null, "init_image": png(64, 64)}),
            ),
            "missing_field",
            "mask_image",
        ),
        invalid(
            "inpaint with a mask that repaints nothing",
            transform(
                json!({"operation": "image_inpaint", "input_image": null, "init_image": png(64, 64), "mask_image": png(64, 64)}),
            ),
            "empty_mask",
            "mask_image",
        ),
        invalid(
            "unknown resize mode",
            transform(json!({"resize_mode": "zoom"})),
            "invalid_resize_mode",
            "resize_mode",
        ),
        invalid(
            "mask blur out of range",
            transform(
                json!({"operation": "image_inpaint", "input_image": null, "init_image": png(64, 64), "mask_image": white_png(64, 64), "mask_blur": 500}),
            ),
            "invalid_mask_blur",
            "mask_blur",
        ),
        invalid(
            "mask blur on transform",
            transform(json!({"mask_blur": 4})),
            "unexpected_field",
            "mask_blur",
        ),
        invalid(
            "inpaint with a broken mask",
            transform(
                json!({"operation": "image_inpaint", "input_image": null, "init_image": png(64, 64), "mask_image": "AAAA"}),
            ),
            "invalid_image",
            "mask_image",
        ),
        Case {
            content_type: Some("text/plain"),
            ..post(
                "wrong content type",
                with(json!({})),
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            )
        },
        Case {
            content_type: None,
            ..post(
                "no content type",
                with(json!({})),
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                None,
            )
        },
        post(
            "body over the limit",
            with(json!({"prompt": "z".repeat(300_000)})),
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        other(
            "limit not a number",
            Method::GET,
            "/v1/jobs?limit=abc",
            S::BAD_REQUEST,
            "invalid_query",
        ),
        other(
            "image index not a number",
            Method::GET,
            "/v1/jobs/x/images/abc",
            S::BAD_REQUEST,
            "invalid_path",
        ),
        other(
            "wrong method",
            Method::PUT,
            "/v1/jobs",
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        other(
            "wrong method on a job",
            Method::POST,
            "/v1/jobs/abc",
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        other(
            "unknown route",
            Method::GET,
            "/v2/nothing",
            S::NOT_FOUND,
            "not_found",
        ),
        other(
            "unknown job",
            Method::GET,
            "/v1/jobs/unknown",
            S::NOT_FOUND,
            "job_not_found",
        ),
        other(
            "cancel unknown job",
            Method::DELETE,
            "/v1/jobs/unknown",
            S::NOT_FOUND,
            "job_not_found",
        ),
        other(
            "image of unknown job",
            Method::GET,
            "/v1/jobs/unknown/images/0",
            S::NOT_FOUND,
            "job_not_found",
        ),
    ]
}

#[tokio::test]
async fn every_bad_request_gets_its_status_and_code_and_queues_nothing() {
    let limits = Limits {
        max_body_bytes: 256 * 1024,
        ..Limits::default()
    };
    let server = ServerConfig {
        limits,
        ..ServerConfig::default()
    };
    let app = app_with(Duration::ZERO, EngineConfig::default(), server).await;
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut request = Request::builder()
            .method(case.method.clone())
            .uri(case.path);
        if let Some(content_type) = case.content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let reply = app
            .send(request.body(Body::from(case.body.clone())).unwrap())
            .await;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let error = &body["error"];
        let field = error["field"].as_str();
        let message_ok = error["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty());
        if reply.status != case.status
            || error["code"] != case.code
            || field != case.field
            || !message_ok
        {
            failures.push(format!(
                "{}: expected {} {} {:?}, got {} {}",
                case.name,
                case.status,
                case.code,
                case.field,
                reply.status,
                String::from_utf8_lossy(&reply.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "application/json",
            "{}",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(
        app.engine.jobs(1000).is_empty(),
        "a bad request queued a job"
    );
    let fine = app
        .submit(serde_json::from_str(&with(json!({}))).unwrap())
        .await;
    app.wait_status(&fine, "succeeded").await;
}

#[tokio::test]
async fn valid_transform_and_inpaint_requests_are_queued_with_their_images() {
    let app = app_with(
        Duration::ZERO,
        EngineConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let data_url = format!("data:image/png;base64,{}", png(100, 72));
    let reply = app
        .post_json(
            "/v1/jobs",
            &json!({"operation": "image_transform", "prompt": "p",
        "input_image": data_url, "strength": 0.5}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let reply = app
        .post_json(
            "/v1/jobs",
            &json!({"operation": "image_inpaint", "prompt": "p",
        "init_image": png(96, 64), "mask_image": white_png(64, 64), "width": 64, "height": 64,
        "resize_mode": "crop", "mask_blur": 4}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
}
