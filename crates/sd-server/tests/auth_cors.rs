//! API keys (Bearer and Basic, 401 with WWW-Authenticate, open health/ready) and CORS.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine as _;
use common::{app, app_with, TestApp};
use sd_engine::EngineConfig;
use sd_server::ServerConfig;

async fn keyed() -> TestApp {
    let server = ServerConfig {
        api_key: Some("s3cret".into()),
        ..ServerConfig::default()
    };
    app_with(Duration::ZERO, EngineConfig::default(), server).await
}

async fn get_with(app: &TestApp, path: &str, authorization: Option<&str>) -> common::Reply {
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn with_a_key_every_route_but_health_and_ready_needs_it() {
    let app = keyed().await;
    for path in ["/health", "/ready"] {
        assert_eq!(
            get_with(&app, path, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    for path in [
        "/v1/info",
        "/v1/jobs",
        "/v1/jobs/x",
        "/v1/jobs/x/stream",
        "/metrics",
        "/openapi.json",
        "/nope",
    ] {
        let reply = get_with(&app, path, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.code(), "unauthorized");
        assert_eq!(
            reply.headers[header::WWW_AUTHENTICATE],
            "Bearer realm=\"sd-worker\""
        );
        assert_eq!(
            get_with(&app, path, Some("Bearer wrong")).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(
        get_with(&app, "/v1/info", Some("Bearer s3cret"))
            .await
            .status,
        StatusCode::OK
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("openwebui:s3cret");
    assert_eq!(
        get_with(&app, "/v1/info", Some(&format!("Basic {basic}")))
            .await
            .status,
        StatusCode::OK
    );
    let wrong = base64::engine::general_purpose::STANDARD.encode("openwebui:nope");
    assert_eq!(
        get_with(&app, "/v1/info", Some(&format!("Basic {wrong}")))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let submit = Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::from(common::generation("keyed").to_string()))
        .unwrap();
    assert_eq!(app.send(submit).await.status, StatusCode::ACCEPTED);
    let anonymous = Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(common::generation("anonymous").to_string()))
        .unwrap();
    assert_eq!(app.send(anonymous).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.engine.jobs(10).len(),
        1,
        "an unauthorized request queued a job"
    );
}

#[tokio::test]
async fn without_a_key_everything_is_open() {
    let app = app(Duration::ZERO).await;
    assert_eq!(
        get_with(&app, "/v1/info", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&app, "/metrics", None).await.status,
        StatusCode::OK
    );
}

async fn cors_app(origins: &[&str]) -> TestApp {
    let server = ServerConfig {
        cors_origins: origins.iter().map(|origin| (*origin).to_owned()).collect(),
        api_key: Some("k".into()),
        ..ServerConfig::default()
    };
    app_with(Duration::ZERO, EngineConfig::default(), server).await
}

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/jobs")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = cors_app(&["https://ui.example"]).await;
    let allowed = app.send(preflight("https://ui.example")).await;
    assert!(allowed.status.is_success(), "{}", allowed.status);
    assert_eq!(
        allowed.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://ui.example"
    );
    let methods = allowed.headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = allowed.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");

    let refused = app.send(preflight("https://evil.example")).await;
    assert!(!refused
        .headers
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    // An actual (unauthorized) response still carries CORS headers so the browser can read the error.
    let request = Request::get("/v1/info")
        .header(header::ORIGIN, "https://ui.example")
        .body(Body::empty())
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://ui.example"
    );
}

#[tokio::test]
async fn no_cors_origins_means_no_cors_headers_and_star_means_any() {
    let none = app(Duration::ZERO).await;
    let reply = none.send(preflight("https://ui.example")).await;
    assert!(!reply
        .headers
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let any = cors_app(&["*"]).await;
    let reply = any.send(preflight("https://anything.example")).await;
    assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}
