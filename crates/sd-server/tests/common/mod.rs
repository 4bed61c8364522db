//! Helpers for in-process HTTP tests: an app on the fake backend, requests through `oneshot`, SSE parsing.
#![allow(clippy::unwrap_used, dead_code)] // Tests may unwrap; not every test file uses every helper.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sd_engine::fake::FakeBackend;
use sd_engine::{Backend, Engine, EngineConfig};
use sd_server::{AppState, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub engine: Engine,
}

pub async fn app(step_delay: Duration) -> TestApp {
    app_with(step_delay, EngineConfig::default(), ServerConfig::default()).await
}

pub async fn app_with(step_delay: Duration, engine: EngineConfig, server: ServerConfig) -> TestApp {
    let loader = Box::new(move || Ok(Box::new(FakeBackend::new(step_delay)) as Box<dyn Backend>));
    let engine = Engine::start(loader, engine).unwrap();
    engine.wait_loaded().await.unwrap();
    let router = sd_server::app(AppState::new(engine.clone(), server)).unwrap();
    TestApp { router, engine }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error.code` of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl TestApp {
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
            .await
            .expect("response body did not end")
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Request::delete(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Submits an `image_generation` job and returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let reply = self.post_json("/v1/jobs", &body).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
        reply.json()["job_id"].as_str().unwrap().to_owned()
    }

    /// The whole SSE stream of a job, parsed.
    pub async fn stream(&self, id: &str) -> Vec<SseEvent> {
        let reply = self.get(&format!("/v1/jobs/{id}/stream")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.headers[header::CONTENT_TYPE], "text/event-stream");
        parse_sse(&reply.text())
    }

    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let job = self.get(&format!("/v1/jobs/{id}")).await.json();
                if job["status"] == status {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("job {id} never became {status}"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|block| !block.trim().is_empty()) {
        let mut event = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(name) = line.strip_prefix("event:") {
                event = Some(name.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        if event.is_some() || !data.is_empty() {
            events.push(SseEvent {
                event,
                data: data.join("\n"),
            });
        }
    }
    events
}

pub fn generation(prompt: &str) -> Value {
    serde_json::json!({"operation": "image_generation", "prompt": prompt, "width": 64, "height": 64, "steps": 3})
}

/// The PNG (base64) the fake produces for `seed` at 64x64.
pub fn fake_png_pixels(seed: u64, prompt: &str) -> image::RgbImage {
    FakeBackend::image_for(seed, prompt, 64, 64)
}

pub fn decode_b64_png(text: &str) -> image::RgbImage {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}
