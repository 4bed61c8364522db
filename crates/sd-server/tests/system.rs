//! Liveness and readiness around model loading, /v1/info, /metrics and /openapi.json.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use common::{app, generation, TestApp};
use sd_engine::fake::FakeBackend;
use sd_engine::{Backend, Engine, EngineConfig};
use sd_server::{AppState, ServerConfig};
use serde_json::Value;

/// An app whose model loads only when the returned sender says so (or fails with the sent reason).
fn loading_app() -> (TestApp, mpsc::Sender<Result<(), String>>) {
    let (release, released) = mpsc::channel::<Result<(), String>>();
    let loader = Box::new(move || {
        released.recv().map_err(|error| error.to_string())??;
        Ok(Box::new(FakeBackend::new(Duration::ZERO)) as Box<dyn Backend>)
    });
    let engine = Engine::start(loader, EngineConfig::default()).unwrap();
    let router = sd_server::app(AppState::new(engine.clone(), ServerConfig::default())).unwrap();
    (TestApp { router, engine }, release)
}

#[tokio::test]
async fn health_at_once_ready_only_after_the_model_loads() {
    let (app, release) = loading_app();
    assert_eq!(
        app.get("/health").await.json(),
        serde_json::json!({"status": "ok"})
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["ready"], false);
    assert_eq!(ready.json()["reason"], "loading model");
    // A download in progress says how far it is.
    app.engine.set_loading_detail("downloading model, 40%");
    let ready = app.get("/ready").await;
    assert_eq!(ready.json()["reason"], "downloading model, 40%");
    let info = app.get("/v1/info").await;
    assert_eq!(
        (info.status, info.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    let submit = app.post_json("/v1/jobs", &generation("early")).await;
    assert_eq!(
        (submit.status, submit.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    assert!(submit.headers.contains_key(header::RETRY_AFTER));

    release.send(Ok(())).unwrap();
    app.engine.wait_loaded().await.unwrap();
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["ready"], true);
    assert_eq!(ready.json()["model"], "fake");
}

#[tokio::test]
async fn a_failed_load_is_reported_by_ready() {
    let (app, release) = loading_app();
    release.send(Err("weights missing".into())).unwrap();
    assert_eq!(
        app.engine.wait_loaded().await.unwrap_err(),
        "weights missing"
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["status"], "failed");
    assert_eq!(ready.json()["reason"], "weights missing");
}

#[tokio::test]
async fn ready_turns_503_while_shutting_down_and_jobs_are_refused() {
    let app = app(Duration::ZERO).await;
    app.engine.shutdown(Duration::from_secs(1)).await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["reason"], "shutting down");
    let submit = app.post_json("/v1/jobs", &generation("late")).await;
    assert_eq!(
        (submit.status, submit.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    );
}

#[tokio::test]
async fn info_describes_model_defaults_samplers_and_limits() {
    let app = app(Duration::ZERO).await;
    let info = app.get("/v1/info").await.json();
    assert_eq!(info["model"], "fake");
    assert_eq!(info["family"], "sd1");
    assert_eq!(info["defaults"]["steps"], 20);
    assert_eq!(info["defaults"]["width"], 512);
    assert_eq!(info["limits"]["max_steps"], 150);
    assert_eq!(info["queue"]["max"], 64);
    let samplers: Vec<&str> = info["samplers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    assert!(
        samplers.contains(&"euler_a") && samplers.contains(&"dpmpp_2m_karras"),
        "{samplers:?}"
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn metrics_count_jobs_by_outcome_and_time_them() {
    let app = app(Duration::ZERO).await;
    let ok = app.submit(generation("ok")).await;
    let bad = app.submit(generation("bad [fail]")).await;
    app.wait_status(&ok, "succeeded").await;
    app.wait_status(&bad, "failed").await;
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = reply.text();
    for needle in [
        "# TYPE sd_worker_queue_depth gauge",
        "sd_worker_jobs_finished_total{outcome=\"succeeded\"} 1",
        "sd_worker_jobs_finished_total{outcome=\"failed\"} 1",
        "# TYPE sd_worker_step_seconds histogram",
        "# TYPE sd_worker_generation_seconds histogram",
        "sd_worker_model_load_seconds",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let app = app(Duration::ZERO).await;
    let document: Value = app.get("/openapi.json").await.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/stream", "get"),
        ("/v1/jobs/{id}/images/{index}", "get"),
        ("/v1/info", "get"),
        ("/v1/embeddings", "get"),
        ("/v1/loras", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    let paths = document["paths"].as_object().unwrap();
    // The OpenAI and A1111 routes are checked in tests/compat_openapi.rs.
    let native: Vec<_> = paths
        .keys()
        .filter(|path| {
            !path.starts_with("/sdapi/")
                && !path.starts_with("/v1/images")
                && !path.starts_with("/v1/models")
        })
        .collect();
    assert_eq!(native.len(), 11, "{native:?}");
    for (path, method) in routes {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
        // And the router really serves it (anything but 404 / 405).
        let request = axum::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(path.replace("{id}", "x").replace("{index}", "0"))
            .body(axum::body::Body::empty())
            .unwrap();
        let reply = app.send(request).await;
        let is_json = reply.headers[header::CONTENT_TYPE] == "application/json";
        let route_missing = is_json && reply.code() == "not_found";
        assert!(
            reply.status != StatusCode::METHOD_NOT_ALLOWED && !route_missing,
            "{method} {path} documented but not served: {}",
            reply.status
        );
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for schema in [
        "JobBody",
        "JobAccepted",
        "JobView",
        "JobEvent",
        "ErrorBody",
        "Info",
        "Limits",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    assert!(schemas["JobBody"]["properties"]["prompt"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_web_ui_is_served_at_the_root_without_an_api_key() {
    let server = ServerConfig {
        api_key: Some("secret".into()),
        ..ServerConfig::default()
    };
    let app = common::app_with(Duration::ZERO, EngineConfig::default(), server).await;
    let page = app.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("<div id=\"root\""));
    // The API behind it still needs the key.
    assert_eq!(app.get("/v1/info").await.status, StatusCode::UNAUTHORIZED);
}
