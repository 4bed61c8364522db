//! End-to-end harness: starts the real `sd-worker serve` binary on a free port, talks HTTP to it, sends it
//! signals; plus the scenarios the `serve_*` tests run against a model.
#![allow(clippy::unwrap_used, dead_code)] // Tests may unwrap; not every test file uses every helper.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The tiny SD 1.x fixture. Missing is a failure, not a skip: these tests exist to run on it.
pub fn tiny_model() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-sd1");
    assert!(
        path.join("model_index.json").is_file(),
        "fixture {} is missing: it is made by tools/make_fixtures.py and committed",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

pub struct Worker {
    child: Child,
    pub base: String,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Worker {
    /// `sd-worker serve --model MODEL --port P EXTRA...`, logging to a file.
    pub fn start(model: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("sd-worker-e2e-{}-{port}.log", std::process::id()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
            .args(["serve", "--model", model, "--port", &port.to_string()])
            .args(extra)
            .env("SD_LOG", "info")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` answers (the server binds before the model loads).
    pub async fn wait_listening(&self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if reqwest::get(self.url("/health"))
                .await
                .is_ok_and(|reply| reply.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("not listening after {limit:?}; log:\n{}", self.log());
    }

    pub async fn wait_ready(&self, limit: Duration) -> Value {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(reply) = reqwest::get(self.url("/ready")).await {
                if reply.status() == 200 {
                    return reply.json().await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not ready after {limit:?}; log:\n{}", self.log());
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("still running after {limit:?}; log:\n{}", self.log());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub async fn submit(worker: &Worker, body: &Value) -> String {
    let reply = reqwest::Client::new()
        .post(worker.url("/v1/jobs"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let text = reply.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads a job's SSE stream to `data: [DONE]`; returns (event name, data) pairs.
pub async fn stream(worker: &Worker, id: &str) -> Vec<(String, String)> {
    let mut reply = reqwest::get(worker.url(&format!("/v1/jobs/{id}/stream")))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = reply.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("data: [DONE]") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("stream did not reach [DONE]");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            (event, data)
        })
        .filter(|(event, data)| !event.is_empty() || !data.is_empty())
        .collect()
}

pub async fn job(worker: &Worker, id: &str) -> Value {
    reqwest::get(worker.url(&format!("/v1/jobs/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn wait_status(worker: &Worker, id: &str, wanted: &[&str]) -> Value {
    let started = Instant::now();
    loop {
        let job = job(worker, id).await;
        if wanted.iter().any(|status| job["status"] == *status) {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job {id} stuck at {job}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- scenarios, run against the tiny fixture (and, with the fake-backend feature, the fake) ----

pub async fn scenario_startup_and_ready(model: &str) {
    let worker = Worker::start(model, &[]);
    worker.wait_listening(Duration::from_secs(10)).await;
    let ready = worker.wait_ready(Duration::from_secs(120)).await;
    assert_eq!(ready["ready"], true);
    let info: Value = reqwest::get(worker.url("/v1/info"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(info["defaults"]["steps"].as_u64().unwrap() > 0, "{info}");
    let metrics = reqwest::get(worker.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("sd_worker_model_loaded 1"), "{metrics}");
}

pub async fn scenario_submit_and_stream_png(model: &str) {
    let worker = Worker::start(model, &[]);
    worker.wait_ready(Duration::from_secs(120)).await;
    let id = submit(
        &worker,
        &json!({"operation": "image_generation", "prompt": "a red square", "steps": 3,
        "width": 64, "height": 64, "seed": 7}),
    )
    .await;
    let events = stream(&worker, &id).await;
    assert_eq!(events.last().unwrap().1, "[DONE]", "{events:?}");
    let (_, complete) = events
        .iter()
        .find(|(event, _)| event == "complete")
        .unwrap_or_else(|| panic!("{events:?}\n{}", worker.log()));
    let complete: Value = serde_json::from_str(complete).unwrap();
    assert_eq!(complete["seeds"], json!([7]));
    let png = base64::engine::general_purpose::STANDARD
        .decode(complete["images"][0].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let image = image::load_from_memory(&png).unwrap();
    assert_eq!((image.width(), image.height()), (64, 64));
    // One progress event per UNet call (PNDM's warm-up makes 4 for 3 steps), counted in the steps asked for.
    let progress: Vec<Value> = events
        .iter()
        .filter(|(event, _)| event == "progress")
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    assert!(progress.len() >= 3, "{events:?}");
    let last = progress.last().unwrap();
    assert_eq!(last["step"], last["total"]);
    assert_eq!(last["total"], 3, "{events:?}");
    let file = reqwest::get(worker.url(&format!("/v1/jobs/{id}/images/0")))
        .await
        .unwrap();
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.bytes().await.unwrap().as_ref(), png.as_slice());
}

pub async fn scenario_cancel(model: &str) {
    let worker = Worker::start(model, &[]);
    worker.wait_ready(Duration::from_secs(120)).await;
    let long = json!({"operation": "image_generation", "prompt": "long", "steps": 150, "width": 128, "height": 128});
    let running = submit(&worker, &long).await;
    let queued = submit(&worker, &long).await;
    let client = reqwest::Client::new();
    let reply = client
        .delete(worker.url(&format!("/v1/jobs/{queued}")))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(job(&worker, &queued).await["status"], "cancelled");

    wait_status(&worker, &running, &["running"]).await;
    let reply = client
        .delete(worker.url(&format!("/v1/jobs/{running}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.status(),
        202,
        "the 150-step job finished before it could be cancelled"
    );
    let cancelled = wait_status(&worker, &running, &["cancelled", "succeeded"]).await;
    assert_eq!(cancelled["status"], "cancelled");
    let events = stream(&worker, &running).await;
    assert_eq!(events[0].0, "cancelled");

    let next = submit(
        &worker,
        &json!({"operation": "image_generation", "prompt": "next", "steps": 2,
        "width": 64, "height": 64}),
    )
    .await;
    wait_status(&worker, &next, &["succeeded"]).await;
}

pub async fn scenario_sigterm(model: &str) {
    let mut worker = Worker::start(model, &["--shutdown-grace", "60s"]);
    worker.wait_ready(Duration::from_secs(120)).await;
    let long = json!({"operation": "image_generation", "prompt": "long", "steps": 40, "width": 64, "height": 64});
    let running = submit(&worker, &long).await;
    let queued = submit(&worker, &long).await;
    wait_status(&worker, &running, &["running"]).await;
    let running_stream = tokio::spawn({
        let base = worker.base.clone();
        async move {
            reqwest::get(format!("{base}/v1/jobs/{running}/stream"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    let queued_stream = tokio::spawn({
        let base = worker.base.clone();
        async move {
            reqwest::get(format!("{base}/v1/jobs/{queued}/stream"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    worker.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = worker.wait_exit(Duration::from_secs(90));
        (status, worker.log())
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit {:?}; log:\n{}",
        status.0,
        status.1
    );
    assert!(status.1.contains("shutting down"), "{}", status.1);
    let running_text = running_stream.await.unwrap();
    assert!(
        running_text.contains("event: complete"),
        "the running job should finish: {running_text}"
    );
    let queued_text = queued_stream.await.unwrap();
    assert!(
        queued_text.contains("event: cancelled") && queued_text.contains("data: [DONE]"),
        "{queued_text}"
    );
}

pub async fn scenario_orchestrator_flags_and_heartbeat(model: &str) {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let beats = Arc::new(Mutex::new(Vec::<Value>::new()));
    let recorded = Arc::clone(&beats);
    let queen = axum::Router::new().route(
        "/v1/worker-heartbeat",
        post(move |axum::Json(body): axum::Json<Value>| async move {
            recorded.lock().unwrap().push(body);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let queen_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, queen).await.unwrap() });

    let mut worker = Worker::start(
        model,
        &[
            "--worker-id",
            "w-42",
            "--device",
            "cpu",
            "--queen-url",
            &queen_url,
            "--heartbeat-interval",
            "200ms",
        ],
    );
    worker.wait_ready(Duration::from_secs(120)).await;
    let started = Instant::now();
    while !beats
        .lock()
        .unwrap()
        .iter()
        .any(|beat| beat["worker"]["status"] == "ready")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no ready heartbeat: {:?}",
            beats.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let beat = beats.lock().unwrap().last().unwrap().clone();
    assert_eq!(beat["worker"]["id"], "w-42");
    assert_eq!(beat["worker"]["implementation"], "sd-worker");
    assert_eq!(
        beat["worker"]["port"].as_u64().unwrap().to_string(),
        worker.base.rsplit(':').next().unwrap()
    );
    worker.signal("TERM");
    let exit = tokio::task::spawn_blocking(move || worker.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(exit.success());
    assert_eq!(
        beats.lock().unwrap().last().unwrap()["worker"]["status"],
        "stopping"
    );
}

fn png_base64(width: u32, height: u32) -> String {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn scenario_transform_and_inpaint(model: &str) {
    let worker = Worker::start(model, &[]);
    worker.wait_ready(Duration::from_secs(120)).await;
    let transform = submit(
        &worker,
        &json!({"operation": "image_transform", "prompt": "repaint", "steps": 4,
        "strength": 0.5, "seed": 3, "input_image": png_base64(64, 64)}),
    )
    .await;
    let inpaint = submit(
        &worker,
        &json!({"operation": "image_inpaint", "prompt": "fill", "steps": 4,
        "seed": 3, "init_image": png_base64(64, 64), "mask_image": png_base64(64, 64)}),
    )
    .await;
    for id in [transform, inpaint] {
        let done = wait_status(&worker, &id, &["succeeded", "failed"]).await;
        assert_eq!(done["status"], "succeeded", "{done}\n{}", worker.log());
        let png = reqwest::get(worker.url(&format!("/v1/jobs/{id}/images/0")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let image = image::load_from_memory(&png).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            (64, 64),
            "the input image's size is the default"
        );
    }
}
