//! Every OpenAI and A1111 route is in `/openapi.json`, and every documented one is served.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::app;
use serde_json::Value;

#[tokio::test]
async fn compat_routes_are_documented_and_served() {
    let app = app(Duration::ZERO).await;
    let document: Value = app.get("/openapi.json").await.json();
    let paths = document["paths"].as_object().unwrap();
    let compat: Vec<(String, String)> = paths
        .iter()
        .filter(|(path, _)| {
            path.starts_with("/sdapi/")
                || path.starts_with("/v1/images")
                || path.starts_with("/v1/models")
        })
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|method| ["get", "post"].contains(&method.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    for expected in [
        ("/v1/images/generations", "post"),
        ("/v1/images/edits", "post"),
        ("/v1/images/files/{job_id}/{file}", "get"),
        ("/v1/models", "get"),
        ("/v1/models/{id}", "get"),
        ("/sdapi/v1/txt2img", "post"),
        ("/sdapi/v1/img2img", "post"),
        ("/sdapi/v1/progress", "get"),
        ("/sdapi/v1/interrupt", "post"),
        ("/sdapi/v1/skip", "post"),
        ("/sdapi/v1/options", "get"),
        ("/sdapi/v1/options", "post"),
        ("/sdapi/v1/samplers", "get"),
        ("/sdapi/v1/schedulers", "get"),
        ("/sdapi/v1/sd-models", "get"),
        ("/sdapi/v1/cmd-flags", "get"),
        ("/sdapi/v1/png-info", "post"),
        ("/sdapi/v1/loras", "get"),
        ("/sdapi/v1/refresh-checkpoints", "post"),
    ] {
        assert!(
            compat.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} undocumented"
        );
    }
    assert_eq!(compat.len(), 37, "{compat:?}");
    for (path, method) in compat {
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(
                path.replace("{job_id}", "x")
                    .replace("{file}", "0.png")
                    .replace("{id}", "x"),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let reply = app.send(request).await;
        let route_missing = reply.status == StatusCode::NOT_FOUND
            && reply.json()["error"]["code"] == "not_found"
            && reply.json()["error"].get("type").is_none();
        assert!(
            reply.status != StatusCode::METHOD_NOT_ALLOWED && !route_missing,
            "{method} {path} documented but not served: {} {}",
            reply.status,
            reply.text()
        );
    }
}
