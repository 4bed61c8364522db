//! [`Gateway`]: the [`JobService`] a gateway serves from. It keeps no job state of its own: every job lives in
//! Redis (see [`crate::scripts`]), so any number of gateways can serve the same fleet and a restarted one
//! answers for jobs submitted before. Only the fleet view (models, workers, queue depths) is cached, for a
//! second at most, by a refresh thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redis::Commands;
use sd_core::pipeline::ModelInfo;
use sd_engine::metadata::ModelHash;
use sd_engine::{
    CancelError, CancelOutcome, EngineConfig, ImageError, JobRequest, JobService, JobSnapshot,
    JobStatus, Occupancy, Readiness, SubmitError, Submitted, Subscription,
};

use crate::conn::{duration_ms, keys, now_ms, redacted, QueueError, Redis};
use crate::registry::{read_fleet, FleetView};
use crate::snapshot::{status_from, JobFields, FIELDS};
use crate::{follow, scripts, wire};

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `max_queue` bounds each model's waiting jobs; `result_ttl` is how long outcomes stay in Redis.
    pub engine: EngineConfig,
    /// How long a job that never finishes is kept (its keys' TTL until it finishes).
    pub active_ttl: Duration,
    /// How often the fleet view is refreshed.
    pub refresh: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            active_ttl: Duration::from_secs(24 * 3600),
            refresh: Duration::from_secs(1),
        }
    }
}

pub struct Gateway {
    redis: Arc<Redis>,
    url: String,
    config: GatewayConfig,
    fleet: Arc<RwLock<FleetView>>,
    submitted: AtomicU64,
    rejected_full: AtomicU64,
    rejected_unavailable: AtomicU64,
}

impl Gateway {
    /// Connects lazily to `url` and starts the fleet refresh thread; Redis need not be up yet.
    pub fn start(url: &str, config: GatewayConfig) -> Result<Arc<Self>, QueueError> {
        let redis = Arc::new(Redis::open(url, Duration::from_secs(2))?);
        let gateway = Arc::new(Self {
            redis,
            url: redacted(url),
            config,
            fleet: Arc::default(),
            submitted: AtomicU64::new(0),
            rejected_full: AtomicU64::new(0),
            rejected_unavailable: AtomicU64::new(0),
        });
        gateway.refresh();
        let weak = Arc::downgrade(&gateway);
        let period = gateway.config.refresh;
        std::thread::Builder::new()
            .name("sd-queue-fleet".into())
            .spawn(move || loop {
                std::thread::sleep(period);
                match weak.upgrade() {
                    Some(gateway) => gateway.refresh(),
                    None => return,
                }
            })
            .map_err(|error| {
                QueueError::Redis(format!("cannot start the refresh thread: {error}"))
            })?;
        Ok(gateway)
    }

    /// Re-reads the fleet; on failure keeps the models it knew (requests can still be validated) and marks
    /// Redis unreachable.
    pub fn refresh(&self) {
        let fresh = read_fleet(&self.redis);
        let mut fleet = self.fleet.write().unwrap_or_else(PoisonError::into_inner);
        match fresh {
            Ok(view) => {
                if !fleet.reachable {
                    tracing::info!(redis = %self.url, "Redis is reachable");
                }
                *fleet = view;
            }
            Err(error) => {
                if fleet.reachable || fleet.error.is_none() {
                    tracing::warn!(redis = %self.url, %error, "cannot read the fleet from Redis");
                }
                fleet.reachable = false;
                fleet.error = Some(error.to_string());
            }
        }
    }

    pub fn fleet(&self) -> FleetView {
        self.fleet
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fields(&self, id: &str) -> Result<JobFields, QueueError> {
        let values: Vec<Option<String>> = self.redis.run(|connection| {
            let mut command = redis::cmd("HMGET");
            command.arg(keys::job(id));
            for field in FIELDS {
                command.arg(*field);
            }
            command.query(connection)
        })?;
        Ok(JobFields::new(values))
    }

    fn position(&self, fields: &JobFields) -> Option<usize> {
        if fields.status() != Some(JobStatus::Queued) {
            return None;
        }
        let (model, entry) = (fields.get("model")?, fields.get("entry")?);
        let ahead: Result<usize, _> = self.redis.run(|connection| {
            scripts::POSITION
                .key(keys::stream(model))
                .arg(entry)
                .invoke(connection)
        });
        Some(ahead.unwrap_or(0).max(1))
    }

    fn read_job(&self, id: &str) -> Option<JobSnapshot> {
        match self.fields(id) {
            Ok(fields) => {
                let position = self.position(&fields);
                fields.snapshot(position)
            }
            Err(error) => {
                tracing::warn!(job = %id, %error, "cannot read the job from Redis");
                None
            }
        }
    }

    /// Queues `request` for `model` (the default model when `None`).
    pub fn submit_model(
        &self,
        model: Option<&str>,
        request: JobRequest,
    ) -> Result<Submitted, SubmitError> {
        let fleet = self.fleet();
        let target = match model {
            Some(name) => fleet.model(name),
            None => fleet.default_model(),
        };
        let Some((name, view)) = target else {
            return Err(SubmitError::NotReady);
        };
        let payload = wire::encode_request(&request)
            .map_err(|error| SubmitError::Unavailable(format!("cannot encode the job: {error}")))?;
        let id = uuid::Uuid::new_v4().to_string();
        let operation = serde_json::to_value(request.operation)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let seeds = serde_json::to_string(&request.generate.seeds).unwrap_or_default();
        let result: Result<i64, QueueError> = self.redis.run(|connection| {
            scripts::SUBMIT
                .key(keys::stream(name))
                .key(keys::job(&id))
                .key(keys::events(&id))
                .key(keys::INDEX)
                .arg(&id)
                .arg(self.config.engine.max_queue)
                .arg(&payload)
                .arg(&operation)
                .arg(now_ms())
                .arg(name)
                .arg(duration_ms(self.config.active_ttl))
                .arg(&seeds)
                .arg(request.generate.width)
                .arg(request.generate.height)
                .invoke(connection)
        });
        match result {
            Ok(position) if position > 0 => {
                self.submitted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %id, model = %name, position, "job queued in Redis");
                Ok(Submitted {
                    id,
                    position: usize::try_from(position).unwrap_or(usize::MAX),
                })
            }
            Ok(_) => {
                self.rejected_full.fetch_add(1, Ordering::Relaxed);
                // The wait for one slot: a job's mean run time spread over the model's live workers.
                let job_seconds = view.mean_job_ms.unwrap_or(1000.0) / 1000.0;
                let seconds = (job_seconds / view.workers.max(1) as f64)
                    .ceil()
                    .clamp(1.0, 600.0);
                Err(SubmitError::QueueFull {
                    retry_after: Duration::from_secs_f64(seconds),
                })
            }
            Err(error) => {
                self.rejected_unavailable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(redis = %self.url, %error, "cannot queue a job");
                Err(SubmitError::Unavailable(format!(
                    "the job queue (Redis) cannot be reached; try again shortly ({error})"
                )))
            }
        }
    }

    /// The named model's description (for validation against it).
    pub fn model_named(&self, name: &str) -> Option<Arc<ModelInfo>> {
        self.fleet()
            .model(name)
            .map(|(_, view)| Arc::clone(&view.info))
    }
}

impl JobService for Gateway {
    fn readiness(&self) -> Readiness {
        let fleet = self.fleet();
        match fleet.default_model() {
            Some((_, view)) => Readiness::Ready(Arc::clone(&view.info)),
            None => Readiness::Loading,
        }
    }

    fn loading_detail(&self) -> Option<String> {
        let fleet = self.fleet();
        Some(match fleet.error {
            Some(error) if !fleet.reachable => format!("the job queue is unreachable: {error}"),
            _ => "waiting for a worker to register a model".to_owned(),
        })
    }

    fn model_info(&self) -> Option<Arc<ModelInfo>> {
        self.fleet()
            .default_model()
            .map(|(_, view)| Arc::clone(&view.info))
    }

    fn model_hash(&self) -> Option<ModelHash> {
        None
    }

    fn config(&self) -> &EngineConfig {
        &self.config.engine
    }

    fn submit(&self, request: JobRequest) -> Result<Submitted, SubmitError> {
        self.submit_model(None, request)
    }

    fn model_info_named(&self, name: &str) -> Option<Arc<ModelInfo>> {
        self.model_named(name)
    }

    fn model_names(&self) -> Vec<String> {
        self.fleet().models.keys().cloned().collect()
    }

    fn submit_to(
        &self,
        model: Option<&str>,
        request: JobRequest,
    ) -> Result<Submitted, SubmitError> {
        self.submit_model(model, request)
    }

    fn job(&self, id: &str) -> Option<JobSnapshot> {
        self.read_job(id)
    }

    fn jobs(&self, limit: usize) -> Vec<JobSnapshot> {
        let ids: Result<Vec<String>, _> = self.redis.run(|connection| {
            connection.zrevrange(
                keys::INDEX,
                0,
                isize::try_from(limit).unwrap_or(isize::MAX) - 1,
            )
        });
        let ids = match ids {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "cannot list jobs from Redis");
                return Vec::new();
            }
        };
        let mut jobs = Vec::new();
        for id in ids {
            match self.read_job(&id) {
                Some(job) => jobs.push(job),
                None => {
                    // Expired: forget it in the index too.
                    let _ = self
                        .redis
                        .run(|connection| connection.zrem::<_, _, i64>(keys::INDEX, &id));
                }
            }
        }
        jobs
    }

    fn subscribe(&self, id: &str) -> Option<Subscription> {
        follow::subscribe(&self.redis, id)
    }

    fn image(&self, id: &str, index: usize) -> Result<Bytes, ImageError> {
        let (status, count): (Option<String>, Option<usize>) = self
            .redis
            .run(|connection| connection.hget(keys::job(id), &["status", "image_count"]))
            .map_err(|_| ImageError::NotFound)?;
        let status = status
            .as_deref()
            .and_then(status_from)
            .ok_or(ImageError::NotFound)?;
        if status != JobStatus::Succeeded {
            return Err(ImageError::NotSucceeded(status));
        }
        let count = count.unwrap_or(0);
        if index >= count {
            return Err(ImageError::OutOfRange(count));
        }
        let png: Option<Vec<u8>> = self
            .redis
            .run(|connection| connection.hget(keys::job(id), format!("image:{index}")))
            .map_err(|_| ImageError::NotFound)?;
        png.map(Bytes::from).ok_or(ImageError::NotFound)
    }

    fn cancel(&self, id: &str) -> Result<CancelOutcome, CancelError> {
        let outcome: String = self
            .redis
            .run(|connection| {
                scripts::CANCEL
                    .key(keys::job(id))
                    .key(keys::events(id))
                    .key(keys::cancel(id))
                    .arg(now_ms())
                    .arg(duration_ms(self.config.engine.result_ttl))
                    .arg(duration_ms(self.config.active_ttl))
                    .invoke(connection)
            })
            .map_err(|error| {
                tracing::warn!(job = %id, %error, "cannot cancel in Redis");
                CancelError::NotFound
            })?;
        match outcome.as_str() {
            "now:cancelled" => Ok(CancelOutcome::Cancelled),
            "now:cancelling" => Ok(CancelOutcome::Cancelling),
            other => match status_from(other) {
                Some(status) => Err(CancelError::AlreadyFinished(status)),
                None => Err(CancelError::NotFound),
            },
        }
    }

    fn occupancy(&self) -> Occupancy {
        let fleet = self.fleet();
        Occupancy {
            queued: fleet.models.values().map(|model| model.waiting).sum(),
            running: fleet.models.values().any(|model| model.busy > 0),
            accepting: fleet.reachable,
        }
    }

    fn metrics(&self) -> String {
        crate::metrics::render(
            &self.fleet(),
            self.submitted.load(Ordering::Relaxed),
            self.rejected_full.load(Ordering::Relaxed),
            self.rejected_unavailable.load(Ordering::Relaxed),
        )
    }
}
