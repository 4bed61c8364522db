//! `sd-worker serve`: binds at once, loads the model on the engine's model thread, serves the HTTP API,
//! heartbeats to the queen, and shuts down gracefully on SIGTERM/SIGINT. A model that fails to load ends the
//! process with an error (non-zero exit) that says why.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sd_core::loader::hub::{DownloadObserver, DownloadProgress};
use sd_engine::{Engine, EngineConfig, Loader};
use sd_server::heartbeat::{HeartbeatClient, HeartbeatConfig};
use sd_server::validate::Limits;
use sd_server::{AppState, ServerConfig};
use tokio::sync::watch;

use crate::cli::{ModelArgs, ServeArgs};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let api_key = api_key(&args)?;
    check_bind_policy(&args.host, api_key.is_some(), args.insecure_no_auth)?;
    let no_model = args.model.model.is_empty() && args.library.models_dirs.is_empty();
    match (&args.queue, no_model) {
        (Some(url), true) => return crate::fleet::gateway(&args, url.clone(), api_key).await,
        (Some(_), false) => bail!(
            "serve --queue is a fleet gateway and loads no model: drop --model, and run the model with \
             `sd-worker work --queue URL --model M`"
        ),
        (None, true) => bail!(
            "--model or --models-dir is required (or --queue URL to run a fleet gateway)"
        ),
        (None, false) => {}
    }
    // Download progress goes to the log and to `/ready`; the engine exists once `start` returns.
    let started: Arc<std::sync::OnceLock<Engine>> = Arc::default();
    let engine = Engine::start_models(
        crate::library::model_set(
            &args.model,
            &args.library,
            download_reporter(Arc::clone(&started)),
        )?,
        EngineConfig {
            max_queue: usize::try_from(args.max_queue).unwrap_or(usize::MAX),
            result_ttl: args.result_ttl,
            max_finished: args.max_results,
            max_result_bytes: usize::try_from(args.max_result_mb.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            preview_interval: (!args.preview_interval.is_zero()).then_some(args.preview_interval),
            ..EngineConfig::default()
        },
    )
    .context("cannot start the model thread")?;
    let _ = started.set(engine.clone());

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    tracing::info!("listening on http://{address}");

    let version = env!("CARGO_PKG_VERSION").to_owned();
    let config = server_config(&args, api_key);
    let app = sd_server::app(AppState::new(engine.clone(), config))?;

    let (stop_heartbeat, heartbeat_stopped) = watch::channel(false);
    let heartbeat = match &args.queen_url {
        Some(queen_url) => {
            let client = Arc::new(HeartbeatClient::new(HeartbeatConfig {
                queen_url: queen_url.clone(),
                worker_id: args
                    .worker_id
                    .clone()
                    .unwrap_or_else(|| format!("sd-worker-{}", address.port())),
                model_id: args.model.model.clone(),
                device: args.model.device.clone(),
                port: address.port(),
                interval: args.heartbeat_interval,
                version,
            })?);
            let running = Arc::clone(&client);
            let engine = engine.clone();
            tokio::spawn(async move { running.run(engine, heartbeat_stopped).await });
            Some(client)
        }
        None => None,
    };

    let mut server = HttpServer::spawn(listener, app, &args);

    let load_failure = async {
        match engine.wait_loaded().await {
            Ok(_) => std::future::pending::<String>().await,
            Err(reason) => reason,
        }
    };
    tokio::select! {
        // The reason already names the model ("cannot load model M: ..."); said once, by main.
        reason = load_failure => bail!("{reason}"),
        served = &mut server.task => bail!("the HTTP server stopped: {}", match served {
            Ok(()) => "no error".to_owned(),
            Err(error) => error.to_string(),
        }),
        signal = shutdown_signal() => tracing::info!(signal, "shutting down"),
    }

    let _ = stop_heartbeat.send(true);
    let final_heartbeat = async {
        if let Some(client) = &heartbeat {
            client.send_final().await;
        }
    };
    tokio::join!(engine.shutdown(args.shutdown_grace), final_heartbeat);
    server.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// The HTTP layer's settings from the flags (shared by `serve` and the fleet gateway).
pub(crate) fn server_config(args: &ServeArgs, api_key: Option<String>) -> ServerConfig {
    let limits = Limits {
        max_body_bytes: usize::try_from(args.max_body_mb * 1024 * 1024).unwrap_or(usize::MAX),
        default_prompt_syntax: args.model.prompt_syntax,
        ..Limits::default()
    };
    ServerConfig {
        api_key,
        cors_origins: args.cors_origins.clone(),
        allowed_hosts: args.allowed_hosts.clone(),
        limits,
        body_timeout: (!args.body_timeout.is_zero()).then_some(args.body_timeout),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        loras: sd_core::adapters::LoraLibrary::new(args.model.lora_dir.clone()),
        trust_forwarded: args.trust_forwarded,
        cpu_tasks: args.cpu_tasks,
    }
}

/// The HTTP listener on its own task (connection cap and header timeout from the flags), and how to stop it.
pub(crate) struct HttpServer {
    pub task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpServer {
    pub fn spawn(listener: tokio::net::TcpListener, app: axum::Router, args: &ServeArgs) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = sd_server::listener::ConnectionLimits {
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            header_timeout: args.header_timeout,
            ..Default::default()
        };
        let task = tokio::spawn(async move {
            sd_server::listener::serve(listener, app, limits, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self { task, stop }
    }

    /// Stops accepting and gives open connections five seconds to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("open connections did not close in time");
        }
    }
}

pub(crate) async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

fn api_key(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let key = match (&args.api_key, &args.api_key_file) {
        (Some(key), _) => key.trim().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --api-key-file {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    if key.is_empty() {
        bail!("the API key is empty");
    }
    Ok(Some(key))
}

/// Without a key only loopback may listen, unless the operator explicitly opts out.
fn check_bind_policy(host: &str, has_key: bool, insecure_no_auth: bool) -> anyhow::Result<()> {
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || has_key || insecure_no_auth {
        return Ok(());
    }
    bail!(
        "refusing to listen on {host} without an API key: pass --api-key or --api-key-file, \
         or --insecure-no-auth to serve without authentication"
    )
}

/// Logs each download's progress every 10% and shows it in `/ready` as "downloading model, N% (FILE)".
pub(crate) fn download_reporter(engine: Arc<std::sync::OnceLock<Engine>>) -> DownloadObserver {
    let last = std::sync::Mutex::new((String::new(), u64::MAX));
    DownloadObserver(Arc::new(move |p: &DownloadProgress| {
        let percent = p.percent();
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.0 == p.file && last.1 / 10 == percent / 10 && percent != 100 {
            return;
        }
        if last.0 == p.file && last.1 == percent {
            return;
        }
        *last = (p.file.clone(), percent);
        tracing::info!(file = %p.file, percent, bytes = p.done, total = p.total, "downloading model");
        if let Some(engine) = engine.get() {
            engine.set_loading_detail(format!("downloading model, {percent}% ({})", p.file));
        }
    }))
}

pub(crate) fn loader(model: &ModelArgs, progress: DownloadObserver) -> anyhow::Result<Loader> {
    #[cfg(feature = "fake-backend")]
    if let Some(step_delay) = model.model.strip_prefix("fake:") {
        // Load tests of the service without weights: `--model fake:5ms` sleeps 5 ms per step.
        let delay = if step_delay.is_empty() {
            Duration::ZERO
        } else {
            humantime::parse_duration(step_delay)?
        };
        return Ok(Box::new(move || {
            Ok(Box::new(sd_engine::fake::FakeBackend::new(delay)) as Box<dyn sd_engine::Backend>)
        }));
    }
    let mut options = crate::model_options::load_options(model)?;
    options.hub.progress = Some(progress);
    Ok(sd_engine::pipeline_loader(
        model.model.clone(),
        options,
        sd_core::adapters::LoraLibrary::new(model.lora_dir.clone()),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_binds_without_a_key() {
        for host in ["127.0.0.1", "::1", "[::1]", "localhost"] {
            assert!(check_bind_policy(host, false, false).is_ok(), "{host}");
        }
        assert!(check_bind_policy("0.0.0.0", false, false).is_err());
        assert!(check_bind_policy("0.0.0.0", true, false).is_ok());
        assert!(check_bind_policy("0.0.0.0", false, true).is_ok());
    }
}
