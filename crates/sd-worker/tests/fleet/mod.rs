//! Fleet harness: a real `redis-server` on a free port in a temp dir, and real `sd-worker` gateways
//! (`serve --queue`) and workers (`work --queue`) on the tiny fixture models. redis-server missing is a
//! failure (CI installs Debian's package), never a skip.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name);
    assert!(
        path.join("model_index.json").is_file(),
        "fixture {} missing",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    password: Option<String>,
}

impl RedisServer {
    /// Without persistence; `aof`: with an append-only file, so a restart keeps the queue.
    pub fn start(aof: bool) -> Self {
        Self::start_with(aof, None)
    }

    /// With `requirepass` when `password` is given; [`Self::url`] then carries it.
    pub fn start_with(aof: bool, password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            aof,
            password: password.map(str::to_owned),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(
                self.password
                    .iter()
                    .flat_map(|password| ["--requirepass".to_owned(), password.clone()]),
            )
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): the fleet tests need it on PATH \
                     (Debian: apt-get install -y redis-server; .ci/run installs it)"
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// SIGTERM (Redis flushes its AOF and exits), as an operator's restart does.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gateway or worker process; killed when dropped.
pub struct Proc {
    child: Child,
    pub base: String,
    log: PathBuf,
    pub name: String,
}

impl Proc {
    fn spawn(name: &str, args: &[String], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
            .args(args)
            .env("SD_LOG", "info,sd_queue=debug")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            child,
            base: String::new(),
            log,
            name: name.to_owned(),
        }
    }

    pub fn gateway(redis: &RedisServer, name: &str) -> Self {
        Self::gateway_with(redis, name, 200)
    }

    pub fn gateway_with(redis: &RedisServer, name: &str, max_queue: u32) -> Self {
        let port = free_port();
        let args = [
            "serve",
            "--queue",
            &redis.url(),
            "--port",
            &port.to_string(),
            "--max-queue",
            &max_queue.to_string(),
        ]
        .map(str::to_owned);
        let mut proc = Self::spawn(name, &args, redis.dir.path());
        proc.base = format!("http://127.0.0.1:{port}");
        proc
    }

    pub fn worker(redis: &RedisServer, name: &str, model: &str, extra: &[&str]) -> Self {
        let mut args: Vec<String> = ["work", "--queue", &redis.url(), "--model", &fixture(model)]
            .map(str::to_owned)
            .to_vec();
        args.extend(["--worker-id".into(), name.into()]);
        args.extend(
            ["--heartbeat-interval", "200ms", "--claim-after", "1500ms"].map(str::to_owned),
        );
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        Self::spawn(name, &args, redis.dir.path())
    }

    /// `sd-worker work --queue URL ARGS...` with no other flags added.
    pub fn work(redis: &RedisServer, name: &str, args: &[&str]) -> Self {
        let mut all: Vec<String> = vec!["work".into(), "--queue".into(), redis.url()];
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        Self::spawn(name, &all, redis.dir.path())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_ready(gateway: &Proc) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(reply) = reqwest::get(gateway.url("/ready")).await {
            if reply.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway not ready; log:\n{}", gateway.log());
}

/// Waits until the gateway knows `count` live workers for `model`.
pub async fn wait_workers(gateway: &Proc, model: &str, count: usize) {
    let wanted = format!("sd_fleet_workers{{model=\"{model}\"}} {count}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(reply) = reqwest::get(gateway.url("/metrics")).await {
            if reply.text().await.unwrap_or_default().contains(&wanted) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no {count} workers for {model}; gateway log:\n{}",
        gateway.log()
    );
}

pub fn body(prompt: &str, seed: u64, steps: u64, size: u64) -> Value {
    json!({"operation": "image_generation", "prompt": prompt, "seed": seed, "steps": steps,
           "width": size, "height": size})
}

pub async fn post(gateway: &Proc, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gateway.url("/v1/jobs"))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn submit(gateway: &Proc, body: &Value) -> String {
    let reply = post(gateway, body).await;
    let status = reply.status();
    let json: Value = reply.json().await.unwrap();
    assert_eq!(status, 202, "{json}");
    json["job_id"].as_str().unwrap().to_owned()
}

pub async fn job(gateway: &Proc, id: &str) -> Value {
    reqwest::get(gateway.url(&format!("/v1/jobs/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn wait_status(gateway: &Proc, id: &str, wanted: &[&str], limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let job = job(gateway, id).await;
        if wanted.iter().any(|status| job["status"] == *status) {
            return job;
        }
        assert!(
            started.elapsed() < limit,
            "job {id} is {} after {limit:?}, not {wanted:?}",
            job["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The SSE stream as (event, data) pairs, `[DONE]` included.
pub async fn stream(gateway: &Proc, id: &str) -> Vec<(String, String)> {
    let text = reqwest::get(gateway.url(&format!("/v1/jobs/{id}/stream")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event: ") {
                name = value.to_owned();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data = value.to_owned();
            }
        }
        if !data.is_empty() {
            events.push((name, data));
        }
    }
    events
}

pub async fn image_pixels(gateway: &Proc, id: &str) -> Vec<u8> {
    let png = reqwest::get(gateway.url(&format!("/v1/jobs/{id}/images/0")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    image::load_from_memory(&png).unwrap().to_rgb8().into_raw()
}

/// `sd-worker generate` (the single-process CLI) with the same request; its pixels.
pub fn generate_pixels(prompt: &str, seed: u64, steps: u64, size: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.png");
    let status = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args([
            "generate",
            "--model",
            &fixture("tiny-sd1"),
            "--prompt",
            prompt,
        ])
        .args(["--seed", &seed.to_string(), "--steps", &steps.to_string()])
        .args(["--width", &size.to_string(), "--height", &size.to_string()])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    image::open(&out).unwrap().to_rgb8().into_raw()
}
