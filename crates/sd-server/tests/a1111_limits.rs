//! A1111 routes at their limits (issue 14): `override_settings` naming another checkpoint, a bounded options
//! store, `batch_size x n_iter` overflow, and requests cut short by shutdown.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{app, TestApp};
use serde_json::{json, Value};

fn spawn_txt2img(app: &TestApp, body: Value) -> tokio::task::JoinHandle<common::Reply> {
    let router = app.router.clone();
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = router
            .oneshot(
                Request::post("/sdapi/v1/txt2img")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        common::Reply {
            status,
            headers,
            body: body.to_vec(),
        }
    })
}

#[tokio::test]
async fn a_request_cut_short_by_shutdown_is_an_error_not_an_empty_success() {
    let app = app(Duration::from_millis(20)).await;
    let pending = spawn_txt2img(
        &app,
        json!({"prompt": "p", "width": 64, "height": 64, "steps": 100, "seed": 1}),
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while !app.engine.occupancy().running {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    app.engine.shutdown(Duration::from_millis(50)).await;
    let reply = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], "shutting_down");
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn batch_size_times_n_iter_overflow_is_refused() {
    let app = app(Duration::ZERO).await;
    let huge = 1_u64 << 32;
    let reply = app
        .post_json(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "p", "width": 64, "height": 64, "steps": 1,
                    "batch_size": huge, "n_iter": huge}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["error"]["field"], "batch_size");
}

#[tokio::test]
async fn override_settings_refuse_another_checkpoint_as_options_does() {
    let app = app(Duration::ZERO).await;
    let other = app
        .post_json(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "p", "width": 64, "height": 64, "steps": 1,
                    "override_settings": {"sd_model_checkpoint": "sdxl [0123456789]"}}),
        )
        .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text()
    );
    let body = other.json();
    assert_eq!(body["error"]["code"], "model_not_loaded");
    assert_eq!(body["error"]["field"], "override_settings");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("sdxl [0123456789]"));
    let same = app
        .post_json(
            "/sdapi/v1/txt2img",
            &json!({"prompt": "p", "width": 64, "height": 64, "steps": 1,
                    "override_settings": {"sd_model_checkpoint": "fake [fa4e0000f4]"}}),
        )
        .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text());
}

#[tokio::test]
async fn options_keep_only_known_keys_and_bounded_values() {
    let app = app(Duration::ZERO).await;
    let unknown = app
        .post_json(
            "/sdapi/v1/options",
            &json!({"no_such_option": "x", "samples_format": "webp"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::OK, "{}", unknown.text());
    let options = app.get("/sdapi/v1/options").await.json();
    assert!(options.get("no_such_option").is_none(), "{options}");
    assert_eq!(options["samples_format"], "webp");
    let long = app
        .post_json(
            "/sdapi/v1/options",
            &json!({"samples_format": "x".repeat(10_000)}),
        )
        .await;
    assert_eq!(
        long.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        long.text()
    );
    assert_eq!(long.json()["error"]["field"], "samples_format");
    let huge = app
        .post_json("/sdapi/v1/options", &json!({"junk": "y".repeat(200_000)}))
        .await;
    assert_eq!(
        huge.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        huge.text()
    );
    assert!(huge.json()["detail"].is_string());
}
