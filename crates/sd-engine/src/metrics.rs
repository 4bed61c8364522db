//! Prometheus metrics of the engine: queue depth, jobs by outcome, step, queue-wait and generation time,
//! model load time. Rendered in the text exposition format by [`Metrics::render`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::job::JobStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub(crate) struct Metrics {
    registry: Registry,
    queue_depth: Gauge,
    running: Gauge,
    submitted: Counter,
    rejected: Family<ReasonLabel, Counter>,
    finished: Family<OutcomeLabel, Counter>,
    step_seconds: Histogram,
    queue_wait_seconds: Histogram,
    generation_seconds: Histogram,
    load_seconds: Gauge<f64, AtomicU64>,
    model_loaded: Gauge,
    model_loads: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let queue_depth = Gauge::default();
        let running = Gauge::default();
        let submitted = Counter::default();
        let rejected = Family::<ReasonLabel, Counter>::default();
        let finished = Family::<OutcomeLabel, Counter>::default();
        let step_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let queue_wait_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let generation_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let load_seconds = Gauge::<f64, AtomicU64>::default();
        let model_loaded = Gauge::default();
        let model_loads = Counter::default();

        let mut registry = Registry::with_prefix("sd_worker");
        registry.register(
            "queue_depth",
            "Jobs waiting in the queue",
            queue_depth.clone(),
        );
        registry.register(
            "jobs_running",
            "Jobs the model thread is running (0 or 1)",
            running.clone(),
        );
        registry.register(
            "jobs_submitted",
            "Jobs accepted into the queue",
            submitted.clone(),
        );
        registry.register(
            "jobs_rejected",
            "Jobs refused at submission, by reason",
            rejected.clone(),
        );
        registry.register(
            "jobs_finished",
            "Finished jobs by outcome",
            finished.clone(),
        );
        registry.register(
            "step_seconds",
            "Time per denoising step",
            step_seconds.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time from submission to start",
            queue_wait_seconds.clone(),
        );
        registry.register(
            "generation_seconds",
            "Time the model spent on a job",
            generation_seconds.clone(),
        );
        registry.register(
            "model_load_seconds",
            "Time the model took to load",
            load_seconds.clone(),
        );
        registry.register(
            "model_loaded",
            "1 once the model has loaded",
            model_loaded.clone(),
        );
        registry.register(
            "model_loads",
            "Models loaded since start (the first one, and every switch that had to load)",
            model_loads.clone(),
        );
        Self {
            registry,
            queue_depth,
            running,
            submitted,
            rejected,
            finished,
            step_seconds,
            queue_wait_seconds,
            generation_seconds,
            load_seconds,
            model_loaded,
            model_loads,
        }
    }

    pub fn loaded(&self, seconds: f64) {
        self.load_seconds.set(seconds);
        self.model_loaded.set(1);
        self.model_loads.inc();
    }

    pub fn submitted(&self) {
        self.submitted.inc();
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn started(&self, queue_wait_seconds: f64) {
        self.queue_wait_seconds.observe(queue_wait_seconds);
    }

    pub fn step(&self, seconds: f64) {
        self.step_seconds.observe(seconds);
    }

    pub fn finished(&self, status: JobStatus, generation_seconds: Option<f64>) {
        self.finished
            .get_or_create(&OutcomeLabel {
                outcome: status.as_str(),
            })
            .inc();
        if let Some(seconds) = generation_seconds {
            self.generation_seconds.observe(seconds);
        }
    }

    /// The text exposition, with the gauges that mirror engine state set from `queued` and `running`.
    pub fn render(&self, queued: usize, running: bool) -> String {
        self.queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.running.set(i64::from(running));
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot render metrics");
        }
        text
    }
}
