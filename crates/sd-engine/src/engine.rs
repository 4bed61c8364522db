//! [`Engine`]: the handle async code uses to submit, watch, cancel and list jobs. It never runs a model
//! itself; it edits shared state under one short lock and wakes the model thread ([`crate::model_thread`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sd_core::pipeline::ModelInfo;
use tokio::sync::watch;

use crate::backend::Loader;
use crate::events::{catch_up, JobEvent, Subscription};
use crate::job::{JobId, JobRecord, JobRequest, JobSnapshot, JobStatus};
use crate::metadata::ModelHash;
use crate::metrics::Metrics;
use crate::queue::JobQueue;
use crate::store::JobStore;

pub use crate::replies::{
    CancelError, CancelOutcome, ImageError, Occupancy, Readiness, SubmitError, Submitted,
};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Jobs that may wait (the running one not counted).
    pub max_queue: usize,
    /// How long finished jobs and their images are kept.
    pub result_ttl: Duration,
    /// Finished jobs kept at most; read results beyond it are dropped, unread ones make `submit` refuse.
    pub max_finished: usize,
    /// Bytes of finished results (PNG + base64) kept at most, with the same rule as `max_finished`.
    pub max_result_bytes: usize,
    /// At shutdown, how long a running job asked to stop may take before it is given up on (its watchers
    /// then get a terminal `error` event).
    pub stop_wait: Duration,
    /// Minimum time between two previews of a job; `None` disables previews.
    pub preview_interval: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_queue: 64,
            result_ttl: Duration::from_secs(600),
            max_finished: 256,
            max_result_bytes: 1024 * 1024 * 1024,
            stop_wait: Duration::from_secs(10),
            preview_interval: Some(Duration::from_millis(500)),
        }
    }
}

/// Model threads serving the queue (Retry-After divides the wait by it).
const WORKERS: usize = 1;

pub(crate) struct State {
    pub queue: JobQueue,
    pub store: JobStore,
    pub running: Option<JobId>,
    pub accepting: bool,
    /// Tells the model thread to exit once idle.
    pub exit: bool,
    /// Moving average of job run time, for Retry-After.
    pub mean_job_seconds: Option<f64>,
    /// The model jobs that name none run on (set by the first load; changed by `set_default_model`).
    pub default_model: String,
    /// Loaded models, least recently used first (kept by the model thread).
    pub loaded: Vec<String>,
    /// The model the model thread is loading for a job, if any.
    pub loading: Option<String>,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub wake: Condvar,
    pub config: EngineConfig,
    pub metrics: Metrics,
    pub readiness: watch::Sender<Readiness>,
    /// Set once, by the model thread, just before it reports ready.
    pub model_hash: OnceLock<Option<ModelHash>>,
    /// What loading is doing now (e.g. "downloading model, 40%"), shown by `/ready` while loading.
    pub loading_detail: Mutex<Option<String>>,
    /// The models jobs may name; `None` for a single-model engine.
    pub library: Option<Arc<crate::library::ModelLibrary>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Backend panics are caught outside the lock, so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// How long until a new job could start: every job ahead (waiting, plus the running one) at the mean job
    /// time, shared by this engine's one model thread; rounded up, at least a second, at most an hour.
    pub fn expected_wait(&self) -> Duration {
        let ahead = self.queue.len() + usize::from(self.running.is_some());
        let seconds = (ahead.max(1) as f64 * self.mean_job_seconds.unwrap_or(1.0) / WORKERS as f64)
            .ceil()
            .clamp(1.0, 3600.0);
        Duration::from_secs_f64(seconds)
    }

    /// Tells every waiting job its new place in line.
    pub fn announce_positions(&self) {
        for (id, position) in self.queue.positions() {
            if let Some(record) = self.store.get(id) {
                record.publish(JobEvent::Queued { position });
            }
        }
    }

    /// Ends `id` as `status`: sends the terminal event, closes its stream, starts its TTL.
    pub fn finish(&mut self, id: &str, status: JobStatus, event: JobEvent, metrics: &Metrics) {
        let now = Instant::now();
        let mut generation_seconds = None;
        if let Some(record) = self.store.get_mut(id) {
            if record.status.is_finished() {
                // Already ended (shutdown gave up on it); the first terminal event stands.
                return;
            }
            // A live watcher gets the result with the terminal event: it counts as read.
            record.read = record
                .events
                .as_ref()
                .is_some_and(|events| events.receiver_count() > 0);
            record.status = status;
            record.finished_at = Some(SystemTime::now());
            record.finished = Some(now);
            record.request = None;
            record.publish(event);
            record.events = None;
            generation_seconds = record
                .started
                .map(|started| now.duration_since(started).as_secs_f64());
        }
        metrics.finished(status, generation_seconds);
        self.store.mark_finished(id, now);
    }
}

/// The engine handle; cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
}

impl Engine {
    /// Starts the model thread, which loads the backend with `loader` and then serves jobs.
    pub fn start(loader: Loader, config: EngineConfig) -> std::io::Result<Self> {
        Self::start_models(crate::models::ModelSet::single(loader), config)
    }

    /// Starts the model thread serving `models`: it loads the first of `models.initial` that loads, then
    /// loads the models jobs name from the library as they come (see [`crate::models`]).
    pub fn start_models(
        models: crate::models::ModelSet,
        config: EngineConfig,
    ) -> std::io::Result<Self> {
        let (readiness, _) = watch::channel(Readiness::Loading);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: JobQueue::new(config.max_queue),
                store: JobStore::new(
                    config.result_ttl,
                    config.max_finished,
                    config.max_result_bytes,
                ),
                running: None,
                accepting: true,
                exit: false,
                mean_job_seconds: None,
                default_model: String::new(),
                loaded: Vec::new(),
                loading: None,
            }),
            wake: Condvar::new(),
            config,
            metrics: Metrics::new(),
            readiness,
            model_hash: OnceLock::new(),
            loading_detail: Mutex::new(None),
            library: models.library.clone(),
        });
        crate::model_thread::spawn(Arc::clone(&shared), models)?;
        Ok(Self { shared })
    }

    pub fn readiness(&self) -> Readiness {
        self.shared.readiness.borrow().clone()
    }

    /// Says what loading is doing now (e.g. a download's progress), for `/ready` while the model loads.
    pub fn set_loading_detail(&self, detail: impl Into<String>) {
        *self
            .shared
            .loading_detail
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(detail.into());
    }

    /// The latest [`Self::set_loading_detail`], if any.
    pub fn loading_detail(&self) -> Option<String> {
        self.shared
            .loading_detail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The default model's description, once the first model loaded.
    pub fn model_info(&self) -> Option<Arc<ModelInfo>> {
        let first = match &*self.shared.readiness.borrow() {
            Readiness::Ready(info) => Arc::clone(info),
            _ => return None,
        };
        match &self.shared.library {
            Some(_) => self.model_info_named(&self.default_model()).or(Some(first)),
            None => Some(first),
        }
    }

    /// Waits until the model loaded (`Ok`) or failed to load (`Err` with the reason).
    pub async fn wait_loaded(&self) -> Result<Arc<ModelInfo>, String> {
        let mut readiness = self.shared.readiness.subscribe();
        let settled = readiness
            .wait_for(|state| !matches!(state, Readiness::Loading))
            .await
            .map_err(|_| "the model thread ended".to_owned())?;
        match &*settled {
            Readiness::Ready(info) => Ok(Arc::clone(info)),
            Readiness::Failed(reason) => Err(reason.clone()),
            Readiness::Loading => Err("the model is still loading".to_owned()),
        }
    }

    /// The loaded weights' hash (A1111's `Model hash` is its short form), once loaded.
    pub fn model_hash(&self) -> Option<ModelHash> {
        match &self.shared.library {
            Some(library) => library.hash(&self.default_model()),
            None => self.shared.model_hash.get().cloned().flatten(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Queues a validated request for the default model.
    pub fn submit(&self, request: JobRequest) -> Result<Submitted, SubmitError> {
        self.submit_to(None, request)
    }

    /// Queues a validated request for the model `model` names (any form [`Self::resolve_model`] takes;
    /// `None`: the default model). A single-model engine ignores the name.
    pub fn submit_to(
        &self,
        model: Option<&str>,
        request: JobRequest,
    ) -> Result<Submitted, SubmitError> {
        let metrics = &self.shared.metrics;
        let named = match model {
            Some(name) => Some(self.resolve_model(name).map_err(|unknown| {
                metrics.rejected("unknown_model");
                SubmitError::UnknownModel(unknown)
            })?),
            None => None,
        };
        let mut state = self.shared.lock();
        if !state.accepting {
            metrics.rejected("shutting_down");
            return Err(SubmitError::ShuttingDown);
        }
        // Not `model_info()`: with a library it takes the state lock, which is held here.
        if !matches!(&*self.shared.readiness.borrow(), Readiness::Ready(_)) {
            metrics.rejected("not_ready");
            return Err(SubmitError::NotReady);
        }
        let now = Instant::now();
        state.store.sweep(now);
        if state.queue.len() < self.shared.config.max_queue {
            let pending = state.queue.len() + usize::from(state.running.is_some());
            let generate = &request.generate;
            let estimate = crate::job::estimated_result_bytes(
                generate.width,
                generate.height,
                generate.seeds.len(),
            );
            if let Err(no_room) = state.store.room_for(pending, estimate, now) {
                metrics.rejected("results_full");
                return Err(SubmitError::ResultsFull {
                    retry_after: no_room.retry_after.unwrap_or_else(|| state.expected_wait()),
                });
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        let position = match state.queue.push(id.clone()) {
            Ok(position) => position,
            Err(_) => {
                metrics.rejected("queue_full");
                return Err(SubmitError::QueueFull {
                    retry_after: state.expected_wait(),
                });
            }
        };
        let mut record = JobRecord::new(id.clone(), request);
        record.model = named.unwrap_or_else(|| state.default_model.clone());
        record.publish(JobEvent::Queued { position });
        state.store.insert(record);
        metrics.submitted();
        drop(state);
        self.shared.wake.notify_all();
        tracing::debug!(job = %id, position, "job queued");
        Ok(Submitted { id, position })
    }

    pub fn job(&self, id: &str) -> Option<JobSnapshot> {
        let mut state = self.shared.lock();
        state.store.sweep(Instant::now());
        let position = state.queue.position(id);
        state.store.get(id).map(|record| record.snapshot(position))
    }

    /// Up to `limit` jobs, newest first.
    pub fn jobs(&self, limit: usize) -> Vec<JobSnapshot> {
        let mut state = self.shared.lock();
        state.store.sweep(Instant::now());
        let mut jobs: Vec<JobSnapshot> = state
            .store
            .iter()
            .map(|record| record.snapshot(state.queue.position(&record.id)))
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.created_at));
        jobs.truncate(limit);
        jobs
    }

    /// Whether `id` named a job whose result has been dropped (expired, or evicted once read).
    pub fn expired(&self, id: &str) -> bool {
        let mut state = self.shared.lock();
        state.store.sweep(Instant::now());
        state.store.is_gone(id)
    }

    /// The job's state so far and its live events; `None` for an unknown job.
    pub fn subscribe(&self, id: &str) -> Option<Subscription> {
        let mut state = self.shared.lock();
        state.store.sweep(Instant::now());
        let position = state.queue.position(id);
        let record = state.store.get_mut(id)?;
        // A finished job's snapshot carries its result (shared base64, not re-encoded here).
        if record.status.is_finished() {
            record.read = true;
        }
        let record = &*record;
        Some(Subscription {
            snapshot: catch_up(record, position),
            live: record.events.as_ref().map(|events| events.subscribe()),
        })
    }

    /// PNG `index` of a succeeded job.
    pub fn image(&self, id: &str, index: usize) -> Result<Bytes, ImageError> {
        let mut state = self.shared.lock();
        state.store.sweep(Instant::now());
        let record = state.store.get_mut(id).ok_or(ImageError::NotFound)?;
        if record.status == JobStatus::Succeeded {
            record.read = true;
        }
        let output = match (&record.output, record.status) {
            (Some(output), JobStatus::Succeeded) => output,
            (_, status) => return Err(ImageError::NotSucceeded(status)),
        };
        output
            .images
            .get(index)
            .cloned()
            .ok_or(ImageError::OutOfRange(output.images.len()))
    }

    /// Cancels a waiting job at once, or asks the running one to stop at its next check (between UNet blocks).
    pub fn cancel(&self, id: &str) -> Result<CancelOutcome, CancelError> {
        let mut state = self.shared.lock();
        state.store.sweep(Instant::now());
        let record = state.store.get(id).ok_or(CancelError::NotFound)?;
        match record.status {
            JobStatus::Queued => {
                state.queue.remove(id);
                state.finish(
                    id,
                    JobStatus::Cancelled,
                    JobEvent::Cancelled {},
                    &self.shared.metrics,
                );
                state.announce_positions();
                tracing::info!(job = %id, "queued job cancelled");
                Ok(CancelOutcome::Cancelled)
            }
            JobStatus::Running => {
                record.cancel.store(true, Ordering::SeqCst);
                tracing::info!(job = %id, "running job asked to stop");
                Ok(CancelOutcome::Cancelling)
            }
            finished => Err(CancelError::AlreadyFinished(finished)),
        }
    }

    pub fn occupancy(&self) -> Occupancy {
        let state = self.shared.lock();
        Occupancy {
            queued: state.queue.len(),
            running: state.running.is_some(),
            accepting: state.accepting,
        }
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let load = self.occupancy();
        self.shared.metrics.render(load.queued, load.running)
    }

    /// Graceful stop: refuses new jobs, cancels waiting ones, gives the running job up to `grace` to finish
    /// (then asks it to stop), and lets the model thread exit.
    pub async fn shutdown(&self, grace: Duration) {
        {
            let mut state = self.shared.lock();
            state.accepting = false;
            for id in state.queue.drain() {
                state.finish(
                    &id,
                    JobStatus::Cancelled,
                    JobEvent::Cancelled {},
                    &self.shared.metrics,
                );
            }
        }
        if !self.wait_idle(grace).await {
            tracing::warn!(
                ?grace,
                "the running job outlived the shutdown grace period; cancelling it"
            );
            self.cancel_running();
            if !self.wait_idle(self.shared.config.stop_wait).await {
                self.abandon_running();
            }
        }
        self.shared.lock().exit = true;
        self.shared.wake.notify_all();
    }

    fn cancel_running(&self) {
        let state = self.shared.lock();
        if let Some(record) = state.running.as_deref().and_then(|id| state.store.get(id)) {
            record.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Ends the running job's record now, with a terminal `error` event for its watchers, when it did not stop
    /// in time (the process is about to exit mid-step); the model thread's late outcome is then ignored.
    fn abandon_running(&self) {
        let mut state = self.shared.lock();
        let Some(id) = state.running.clone() else {
            return;
        };
        tracing::warn!(job = %id, "the running job did not stop in time; ending it for shutdown");
        let error = crate::job::JobError::new(
            "shutting_down",
            "the worker shut down before the job could stop",
        );
        if let Some(record) = state.store.get_mut(&id) {
            record.error = Some(error.clone());
        }
        state.finish(
            &id,
            JobStatus::Failed,
            JobEvent::Error {
                code: error.code,
                message: error.message,
            },
            &self.shared.metrics,
        );
    }

    async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.shared.lock().running.is_none() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
