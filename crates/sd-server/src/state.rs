//! What every handler shares: the engine handle and the server's settings.

use std::sync::Arc;

use sd_engine::{Engine, JobService};

use crate::cpu::CpuPool;
use crate::validate::Limits;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// When set, every route but `/health` and `/ready` needs this key (Bearer, or Basic password).
    pub api_key: Option<String>,
    /// Browser origins allowed by CORS; `*` allows any. Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Host names served without an API key besides loopback ones (`--allowed-host`; DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    pub limits: Limits,
    /// A request body must arrive whole within this long of its headers (`--body-timeout`); `None`: no limit.
    pub body_timeout: Option<std::time::Duration>,
    /// Reported by `/v1/info` and the heartbeat.
    pub version: String,
    /// The `--lora-dir` folders: `GET /v1/loras` and the check of `<lora:...>` tags at submission.
    pub loras: sd_core::adapters::LoraLibrary,
    /// Build absolute links (signed image URLs) from `X-Forwarded-Host`/`-Proto` (`--trust-forwarded`): only
    /// behind a proxy that sets them, since any client can send them.
    pub trust_forwarded: bool,
    /// CPU tasks of requests (image decoding, resizing, mask blur, conversion) run at once (`--cpu-tasks`);
    /// 0: one per core.
    pub cpu_tasks: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            limits: Limits::default(),
            body_timeout: Some(std::time::Duration::from_secs(60)),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            loras: Default::default(),
            trust_forwarded: false,
            cpu_tasks: 0,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    /// Runs the jobs: the in-process engine, or a gateway's Redis queue.
    pub engine: Arc<dyn JobService>,
    pub config: Arc<ServerConfig>,
    /// The bounded pool for requests' CPU work.
    pub cpu: Arc<CpuPool>,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> Self {
        Self::with_service(Arc::new(engine), config)
    }

    /// Serves jobs from any [`JobService`] (a gateway passes its Redis queue).
    pub fn with_service(engine: Arc<dyn JobService>, config: ServerConfig) -> Self {
        Self {
            engine,
            cpu: Arc::new(CpuPool::new(config.cpu_tasks)),
            config: Arc::new(config),
        }
    }
}
