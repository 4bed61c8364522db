//! The fleet roles on Redis Streams (see the `sd-queue` crate): `serve --queue URL` without a model is a
//! gateway (the whole HTTP API over the Redis job service), `work --queue URL --model M` a worker (the
//! model on the in-process engine, fed from the model's stream).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sd_engine::{Engine, EngineConfig, JobService};
use sd_queue::conn::redacted;
use sd_queue::{Gateway, GatewayConfig, Redis, WorkerConfig};
use sd_server::AppState;

use crate::cli::{ServeArgs, WorkArgs};
use crate::serve::{download_reporter, loader, server_config, shutdown_signal, HttpServer};

pub async fn gateway(args: &ServeArgs, url: String, api_key: Option<String>) -> anyhow::Result<()> {
    let gateway = Gateway::start(
        &url,
        GatewayConfig {
            engine: EngineConfig {
                max_queue: usize::try_from(args.max_queue).unwrap_or(usize::MAX),
                result_ttl: args.result_ttl,
                max_finished: args.max_results,
                preview_interval: None,
                ..EngineConfig::default()
            },
            ..GatewayConfig::default()
        },
    )
    .with_context(|| format!("cannot use the queue {}", redacted(&url)))?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    tracing::info!(queue = %redacted(&url), "gateway listening on http://{address}");
    let service: Arc<dyn JobService> = gateway;
    let app = sd_server::app(AppState::with_service(
        service,
        server_config(args, api_key),
    ))?;
    let mut server = HttpServer::spawn(listener, app, args);
    tokio::select! {
        _ = &mut server.task => bail!("the HTTP server stopped"),
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
    }
    // Jobs live in Redis: nothing to drain here, only open connections to close.
    server.stop().await;
    tracing::info!("stopped");
    Ok(())
}

pub fn work(args: WorkArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_worker(args))
}

async fn run_worker(mut args: WorkArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.models_dir {
        let candidate = dir.join(&args.model.model);
        if !std::path::Path::new(&args.model.model).exists() && candidate.exists() {
            args.model.model = candidate.to_string_lossy().into_owned();
        }
    }
    let redis = Arc::new(
        Redis::open(&args.queue, Duration::from_secs(2))
            .with_context(|| format!("cannot use the queue {}", redacted(&args.queue)))?,
    );
    let started: Arc<std::sync::OnceLock<Engine>> = Arc::default();
    let engine = Engine::start(
        loader(&args.model, download_reporter(Arc::clone(&started)))?,
        EngineConfig {
            // One job at a time comes from Redis; the local queue only ever holds that one.
            max_queue: 1,
            result_ttl: Duration::from_secs(60),
            max_finished: 4,
            preview_interval: (!args.preview_interval.is_zero()).then_some(args.preview_interval),
            ..EngineConfig::default()
        },
    )
    .context("cannot start the model thread")?;
    let _ = started.set(engine.clone());
    if let Err(reason) = engine.wait_loaded().await {
        bail!("{reason}");
    }
    let model = args
        .model_name
        .clone()
        .unwrap_or_else(|| sd_engine::metadata::model_name(&args.model.model));
    if model.is_empty() || model.contains(char::is_whitespace) {
        bail!("--model-name `{model}`: use a name without spaces");
    }
    let config = WorkerConfig {
        model,
        worker_id: args.worker_id.clone().unwrap_or_else(default_worker_id),
        device: args.model.device.clone(),
        claim_after: args.claim_after,
        max_attempts: args.max_attempts,
        heartbeat: args.heartbeat_interval,
        result_ttl: args.result_ttl,
    };
    if config.claim_after <= config.heartbeat.min(config.claim_after / 3) {
        bail!("--claim-after must be longer than the heartbeat interval");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (engine, stop) = (engine.clone(), Arc::clone(&stop));
        tokio::task::spawn_blocking(move || sd_queue::worker::run(redis, engine, config, stop))
    };
    tokio::pin!(worker);
    tokio::select! {
        finished = &mut worker => {
            finished.context("the worker loop panicked")??;
            return Ok(());
        }
        signal = shutdown_signal() => {
            tracing::info!(signal, "finishing the running job, then stopping");
            stop.store(true, Ordering::SeqCst);
        }
    }
    worker.await.context("the worker loop panicked")??;
    engine.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}
