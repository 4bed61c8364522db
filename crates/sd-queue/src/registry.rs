//! Who serves what: workers register their model (its [`ModelInfo`], kept in `sd:models`) and heartbeat a
//! key that expires when they stop; gateways read both once a second into a [`FleetView`], which is all
//! they need to validate requests, report readiness and export queue depths. Nothing here is job state.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Commands;
use sd_core::pipeline::ModelInfo;
use serde::{Deserialize, Serialize};

use crate::conn::{keys, QueueError, Redis, GROUP};

/// What a worker says about itself in its heartbeat key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub id: String,
    pub model: String,
    pub device: String,
    /// The job it runs now, if any.
    pub job: Option<String>,
    /// Moving average of its jobs' run time, for Retry-After estimates.
    pub mean_job_ms: Option<f64>,
}

/// One model as the gateway sees it.
#[derive(Clone, Debug)]
pub struct ModelView {
    pub info: Arc<ModelInfo>,
    /// Live workers (their heartbeat key has not expired).
    pub workers: usize,
    pub busy: usize,
    /// Jobs waiting: in the stream and not yet handed to a worker.
    pub waiting: usize,
    pub mean_job_ms: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct FleetView {
    pub models: BTreeMap<String, ModelView>,
    /// The last refresh reached Redis.
    pub reachable: bool,
    pub error: Option<String>,
}

impl FleetView {
    /// The model jobs go to when the request names none: the first (by name) with a live worker, else the
    /// first known.
    pub fn default_model(&self) -> Option<(&String, &ModelView)> {
        self.models
            .iter()
            .find(|(_, model)| model.workers > 0)
            .or_else(|| self.models.iter().next())
    }

    /// A model by its registered name, or by its reference's last path component (what A1111 shows).
    pub fn model(&self, name: &str) -> Option<(&String, &ModelView)> {
        self.models.get_key_value(name).or_else(|| {
            self.models
                .iter()
                .find(|(_, model)| sd_engine::metadata::model_name(&model.info.model) == name)
        })
    }
}

/// Reads the registry and each model's queue from Redis.
pub fn read_fleet(redis: &Redis) -> Result<FleetView, QueueError> {
    redis.run(|connection| {
        let models: BTreeMap<String, String> = connection.hgetall(keys::MODELS)?;
        let ids: Vec<String> = connection.smembers(keys::WORKERS)?;
        let mut workers = Vec::new();
        for id in ids {
            let status: Option<String> = connection.get(keys::worker(&id))?;
            match status.and_then(|json| serde_json::from_str::<WorkerStatus>(&json).ok()) {
                Some(status) => workers.push(status),
                None => {
                    let _: i64 = connection.srem(keys::WORKERS, &id)?;
                }
            }
        }
        let mut view = FleetView {
            reachable: true,
            ..FleetView::default()
        };
        for (name, json) in models {
            let Ok(info) = serde_json::from_str::<ModelInfo>(&json) else {
                continue;
            };
            let stream = keys::stream(&name);
            let length: usize = connection.xlen(&stream)?;
            let pending: redis::Value = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .query(connection)
                .unwrap_or(redis::Value::Nil);
            let pending = match pending {
                redis::Value::Array(items) => match items.first() {
                    Some(redis::Value::Int(count)) => usize::try_from(*count).unwrap_or(0),
                    _ => 0,
                },
                _ => 0,
            };
            let serving: Vec<&WorkerStatus> = workers.iter().filter(|w| w.model == name).collect();
            let times: Vec<f64> = serving.iter().filter_map(|w| w.mean_job_ms).collect();
            view.models.insert(
                name,
                ModelView {
                    info: Arc::new(info),
                    workers: serving.len(),
                    busy: serving.iter().filter(|w| w.job.is_some()).count(),
                    waiting: length.saturating_sub(pending),
                    mean_job_ms: (!times.is_empty())
                        .then(|| times.iter().sum::<f64>() / times.len() as f64),
                },
            );
        }
        Ok(view)
    })
}
