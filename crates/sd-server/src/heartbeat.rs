//! The orchestrator client: registers with the queen and sends a heartbeat every interval (and soon after
//! the worker's status changes). An unreachable queen is retried with exponential backoff and never stops
//! the worker. On shutdown, [`HeartbeatClient::send_final`] reports `stopping`.

use std::time::Duration;

use sd_engine::{JobService, Readiness};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// The queen's base URL; heartbeats go to `{queen_url}/v1/worker-heartbeat`.
    pub queen_url: String,
    pub worker_id: String,
    /// The model as the orchestrator named it (the `--model` argument).
    pub model_id: String,
    pub device: String,
    pub port: u16,
    pub interval: Duration,
    pub version: String,
}

#[derive(Debug, Serialize)]
struct Heartbeat<'a> {
    worker: WorkerReport<'a>,
    timestamp: String,
}

#[derive(Debug, Serialize)]
struct WorkerReport<'a> {
    id: &'a str,
    model_id: &'a str,
    device: &'a str,
    port: u16,
    status: &'static str,
    implementation: &'static str,
    version: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("heartbeat to {url} failed: {source}")]
    Send { url: String, source: reqwest::Error },
    #[error("queen answered {status} to the heartbeat")]
    Status { status: reqwest::StatusCode },
}

/// `starting | ready | busy | stopping | stopped`, from the engine's state.
pub fn worker_status(engine: &dyn JobService) -> &'static str {
    let load = engine.occupancy();
    match engine.readiness() {
        _ if !load.accepting => "stopping",
        Readiness::Loading => "starting",
        Readiness::Failed(_) => "stopped",
        Readiness::Ready(_) if load.running || load.queued > 0 => "busy",
        Readiness::Ready(_) => "ready",
    }
}

pub struct HeartbeatClient {
    client: reqwest::Client,
    config: HeartbeatConfig,
    url: String,
}

impl HeartbeatClient {
    pub fn new(config: HeartbeatConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let url = format!(
            "{}/v1/worker-heartbeat",
            config.queen_url.trim_end_matches('/')
        );
        Ok(Self {
            client,
            config,
            url,
        })
    }

    pub async fn send(&self, status: &'static str) -> Result<(), HeartbeatError> {
        let config = &self.config;
        let body = Heartbeat {
            worker: WorkerReport {
                id: &config.worker_id,
                model_id: &config.model_id,
                device: &config.device,
                port: config.port,
                status,
                implementation: "sd-worker",
                version: &config.version,
            },
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        };
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|source| HeartbeatError::Send {
                url: self.url.clone(),
                source,
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(HeartbeatError::Status {
                status: response.status(),
            })
        }
    }

    /// Heartbeats until `stop` turns true.
    pub async fn run(&self, engine: impl JobService, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let status = worker_status(&engine);
            let wait = match self.send(status).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(url = %self.url, "queen reachable again");
                    }
                    failures = 0;
                    self.config.interval
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = backoff(failures, self.config.interval);
                    tracing::warn!(%error, retry_in = ?backoff, "heartbeat failed");
                    backoff
                }
            };
            let next = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => break,
                    _ = stop.wait_for(|stopping| *stopping) => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {
                        // Tell the queen promptly when the model becomes ready (or anything else changes),
                        // but not on every busy/ready flip of a stream of jobs.
                        let now = worker_status(&engine);
                        let flapping = matches!((status, now), ("ready", "busy") | ("busy", "ready"));
                        if now != status && !flapping && failures == 0 {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The last heartbeat: `stopping`, tried a few times within a couple of seconds.
    pub async fn send_final(&self) {
        for attempt in 0..3 {
            match self.send("stopping").await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, attempt, "final heartbeat failed"),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// 1 s, 2 s, 4 s, ... capped at the heartbeat interval.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(interval.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let interval = Duration::from_secs(30);
        let waits: Vec<u64> = (1..=7)
            .map(|failures| backoff(failures, interval).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
