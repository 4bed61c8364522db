//! Heartbeats against a test queen: the body's shape, status changes (starting -> ready -> busy -> stopping),
//! and a queen that fails never stopping the worker.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use sd_engine::fake::FakeBackend;
use sd_engine::{Backend, Engine, EngineConfig, JobRequest, Operation};
use sd_server::heartbeat::{HeartbeatClient, HeartbeatConfig};
use serde_json::Value;
use tokio::sync::watch;

#[derive(Clone, Default)]
struct Queen {
    beats: Arc<Mutex<Vec<Value>>>,
    /// Requests to fail (500) before succeeding.
    fail_first: Arc<AtomicUsize>,
}

async fn beat(State(queen): State<Queen>, Json(body): Json<Value>) -> StatusCode {
    if queen.fail_first.load(Ordering::SeqCst) > 0 {
        queen.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    queen.beats.lock().unwrap().push(body);
    StatusCode::OK
}

async fn start_queen(queen: Queen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/worker-heartbeat", post(beat))
        .with_state(queen);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/")
}

fn config(queen_url: String, interval: Duration) -> HeartbeatConfig {
    HeartbeatConfig {
        queen_url,
        worker_id: "worker-7".into(),
        model_id: "tiny-sd1".into(),
        device: "cpu".into(),
        port: 8601,
        interval,
        version: "9.9.9".into(),
    }
}

fn statuses(queen: &Queen) -> Vec<String> {
    queen
        .beats
        .lock()
        .unwrap()
        .iter()
        .map(|beat| beat["worker"]["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for_status(queen: &Queen, status: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !statuses(queen).iter().any(|seen| seen == status) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {status} heartbeat; saw {:?}", statuses(queen)));
}

#[tokio::test]
async fn the_worker_reports_starting_then_ready_soon_after_loading_and_stopping_at_the_end() {
    let queen = Queen::default();
    let url = start_queen(queen.clone()).await;
    let (release, released) = mpsc::channel::<()>();
    let loader = Box::new(move || {
        released.recv().map_err(|error| error.to_string())?;
        Ok(Box::new(FakeBackend::new(Duration::ZERO)) as Box<dyn Backend>)
    });
    let engine = Engine::start(loader, EngineConfig::default()).unwrap();
    // A long interval: "ready" must arrive because the status changed, not because the interval passed.
    let client = Arc::new(HeartbeatClient::new(config(url, Duration::from_secs(60))).unwrap());
    let (stop, stopped) = watch::channel(false);
    let running = Arc::clone(&client);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { running.run(engine, stopped).await }
    });
    wait_for_status(&queen, "starting").await;
    release.send(()).unwrap();
    wait_for_status(&queen, "ready").await;

    let first = queen.beats.lock().unwrap()[0].clone();
    let worker = &first["worker"];
    assert_eq!(worker["id"], "worker-7");
    assert_eq!(worker["model_id"], "tiny-sd1");
    assert_eq!(worker["device"], "cpu");
    assert_eq!(worker["port"], 8601);
    assert_eq!(worker["implementation"], "sd-worker");
    assert_eq!(worker["version"], "9.9.9");
    humantime::parse_rfc3339(first["timestamp"].as_str().unwrap()).unwrap();

    stop.send(true).unwrap();
    task.await.unwrap();
    client.send_final().await;
    assert_eq!(statuses(&queen).last().unwrap(), "stopping");
}

#[tokio::test]
async fn a_failing_queen_is_retried_and_busy_is_reported() {
    let queen = Queen {
        fail_first: Arc::new(AtomicUsize::new(3)),
        ..Queen::default()
    };
    let url = start_queen(queen.clone()).await;
    let loader =
        Box::new(|| Ok(Box::new(FakeBackend::new(Duration::from_millis(20))) as Box<dyn Backend>));
    let engine = Engine::start(loader, EngineConfig::default()).unwrap();
    engine.wait_loaded().await.unwrap();
    let client = HeartbeatClient::new(config(url, Duration::from_millis(100))).unwrap();
    let (_stop, stopped) = watch::channel(false);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { client.run(engine, stopped).await }
    });
    wait_for_status(&queen, "ready").await;
    assert_eq!(
        queen.fail_first.load(Ordering::SeqCst),
        0,
        "the failed heartbeats were retried"
    );

    let request = JobRequest {
        operation: Operation::ImageGeneration,
        generate: sd_core::pipeline::GenerateRequest {
            prompt: "busy".into(),
            negative_prompt: String::new(),
            steps: 50,
            guidance_scale: 7.5,
            width: 64,
            height: 64,
            sampler: None,
            seeds: vec![1],
            clip_skip: 1,
            init: None,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        },
    };
    engine.submit(request).unwrap();
    wait_for_status(&queen, "busy").await;
    task.abort();
}

#[tokio::test]
async fn an_unreachable_queen_never_stops_the_worker() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let loader = Box::new(|| Ok(Box::new(FakeBackend::new(Duration::ZERO)) as Box<dyn Backend>));
    let engine = Engine::start(loader, EngineConfig::default()).unwrap();
    let client = HeartbeatClient::new(config(url, Duration::from_millis(50))).unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { client.run(engine, stopped).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "the heartbeat loop gave up");
    engine.wait_loaded().await.unwrap();
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
