//! One attempt at one job on a worker: the request runs on the in-process engine, its progress and previews
//! are copied to the job's events in Redis (fenced by the attempt), the cancel flag is polled between
//! events, and the outcome is written once, retried until Redis takes it.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use redis::Commands;
use sd_engine::{JobError, JobEvent, JobRequest, JobStatus};
use tokio::sync::broadcast::error::TryRecvError;

use crate::conn::{duration_ms, keys, now_ms, QueueError};
use crate::scripts;
use crate::worker::Consumer;

/// How often a running job's cancel flag is read.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// What a run ended with, ready to write.
pub(crate) struct Outcome {
    status: JobStatus,
    event: JobEvent,
    fields: Vec<(String, Vec<u8>)>,
}

impl Outcome {
    pub(crate) fn failed(code: &str, message: String) -> Self {
        let error = JobError::new(code, message.clone());
        Self {
            status: JobStatus::Failed,
            event: JobEvent::Error {
                code: code.to_owned(),
                message,
            },
            fields: vec![field("error", json(&error))],
        }
    }
}

fn field(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), value.into())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub(crate) struct Run<'a> {
    pub consumer: &'a Consumer,
    pub id: &'a str,
    pub entry: &'a str,
    pub attempt: &'a str,
    pub created_ms: u64,
    pub started_ms: u64,
}

impl Run<'_> {
    /// Runs the request on the local engine until it ends; copies its events to Redis meanwhile.
    pub fn execute(&self, request: JobRequest) -> Outcome {
        let engine = &self.consumer.engine;
        let local = match engine.submit(request) {
            Ok(submitted) => submitted.id,
            Err(error) => return Outcome::failed("worker_unavailable", error.to_string()),
        };
        let Some(subscription) = engine.subscribe(&local) else {
            return Outcome::failed("internal", "the worker lost the job it started".into());
        };
        let mut pending: VecDeque<JobEvent> = subscription.snapshot.into();
        let mut live = subscription.live;
        let mut checked = Instant::now();
        let mut owned = true;
        loop {
            let event = match pending.pop_front() {
                Some(event) => Some(event),
                None => match live.as_mut().map(|live| live.try_recv()) {
                    Some(Ok(event)) => Some(event),
                    Some(Err(TryRecvError::Empty)) => None,
                    Some(Err(TryRecvError::Lagged(_))) => continue,
                    Some(Err(TryRecvError::Closed)) | None => {
                        // Ended without a terminal event we saw: read the outcome from the engine.
                        return self.outcome_of(&local);
                    }
                },
            };
            match event {
                Some(event) if event.is_terminal() => return self.outcome(&local, event),
                Some(event @ (JobEvent::Progress { .. } | JobEvent::Preview { .. })) => {
                    if owned && !self.publish(&event) {
                        tracing::warn!(job = %self.id, "another worker took this job over; stopping");
                        owned = false;
                        let _ = engine.cancel(&local);
                    }
                }
                Some(_) => {}
                None => {
                    std::thread::sleep(Duration::from_millis(10));
                    if owned && checked.elapsed() >= CANCEL_POLL {
                        checked = Instant::now();
                        if self.cancel_requested() {
                            tracing::info!(job = %self.id, "cancel requested; stopping after this step");
                            let _ = engine.cancel(&local);
                        }
                    }
                }
            }
        }
    }

    fn cancel_requested(&self) -> bool {
        self.consumer
            .redis
            .run(|c| c.exists::<_, bool>(keys::cancel(self.id)))
            .unwrap_or(false)
    }

    /// Appends a progress or preview event; false when this attempt no longer owns the job. Redis being
    /// unreachable is not a loss of ownership: progress is dropped, the outcome is kept until it can be written.
    fn publish(&self, event: &JobEvent) -> bool {
        let progress = match event {
            JobEvent::Progress {
                step,
                total,
                percent,
                eta_ms,
            } => json(&sd_engine::Progress {
                step: *step,
                total: *total,
                percent: *percent,
                eta_ms: *eta_ms,
            }),
            _ => String::new(),
        };
        let written: Result<i64, QueueError> = self.consumer.redis.run(|c| {
            scripts::EVENT
                .key(keys::job(self.id))
                .key(keys::events(self.id))
                .arg(self.attempt)
                .arg(json(event))
                .arg(&progress)
                .invoke(c)
        });
        match written {
            Ok(written) => written == 1,
            Err(error) => {
                tracing::debug!(job = %self.id, %error, "progress not written");
                true
            }
        }
    }

    fn outcome_of(&self, local: &str) -> Outcome {
        match self.consumer.engine.job(local) {
            Some(job) if job.status == JobStatus::Succeeded => self.outcome(
                local,
                JobEvent::Complete {
                    images: Vec::new(),
                    seeds: job.seeds.clone(),
                    timings: job.timings.clone().unwrap_or_default(),
                },
            ),
            Some(job) if job.status == JobStatus::Cancelled => {
                self.outcome(local, JobEvent::Cancelled {})
            }
            Some(job) => {
                let error = job
                    .error
                    .unwrap_or_else(|| JobError::new("failed", "the job failed"));
                Outcome::failed(&error.code, error.message)
            }
            None => Outcome::failed("internal", "the worker lost the job it ran".into()),
        }
    }

    fn outcome(&self, local: &str, event: JobEvent) -> Outcome {
        let engine = &self.consumer.engine;
        match event {
            JobEvent::Complete { seeds, timings, .. } => {
                let Some(job) = engine.job(local) else {
                    return Outcome::failed("internal", "the worker lost the job's result".into());
                };
                let mut pngs = Vec::with_capacity(job.image_count);
                for index in 0..job.image_count {
                    match engine.image(local, index) {
                        Ok(png) => pngs.push(png),
                        Err(error) => return Outcome::failed("internal", error.to_string()),
                    }
                }
                // Queue time is the fleet's (submitted -> a worker started it), not the local engine's.
                let now = now_ms();
                let mut timings = timings;
                timings.queue_ms = self.started_ms.saturating_sub(self.created_ms) as f64;
                timings.total_ms = now.saturating_sub(self.created_ms) as f64;
                let mut fields = vec![
                    field("image_count", pngs.len().to_string()),
                    field("timings", json(&timings)),
                    field(
                        "vae_tiled",
                        if job.vae_tiled == Some(true) {
                            "1"
                        } else {
                            "0"
                        },
                    ),
                    field("warnings", json(&job.warnings)),
                    field("seeds", json(&seeds)),
                ];
                if let Some((model, hash)) = &job.model {
                    fields.push(field("model", model.as_str()));
                    if let Some(hash) = hash {
                        fields.push(field("model_hash", hash.as_str()));
                    }
                }
                if let Some((prompt, negative)) = &job.prompt {
                    fields.push(field("prompt", prompt.as_str()));
                    fields.push(field("negative_prompt", negative.as_str()));
                }
                let images = pngs.iter().map(|png| sd_engine_base64(png)).collect();
                fields.extend(
                    pngs.into_iter()
                        .enumerate()
                        .map(|(index, png)| field(&format!("image:{index}"), png.to_vec())),
                );
                Outcome {
                    status: JobStatus::Succeeded,
                    event: JobEvent::Complete {
                        images,
                        seeds,
                        timings,
                    },
                    fields,
                }
            }
            JobEvent::Error { code, message } => Outcome::failed(&code, message),
            _ => Outcome {
                status: JobStatus::Cancelled,
                event: JobEvent::Cancelled {},
                fields: Vec::new(),
            },
        }
    }

    /// Writes the outcome and acknowledges the entry. While Redis is unreachable the outcome is kept and
    /// the write retried (the entry stays pending and fresh meanwhile, so nobody else runs the job).
    pub fn finish(&self, outcome: Outcome, _stop: &AtomicBool) {
        let mut failures = 0u32;
        loop {
            let written: Result<i64, QueueError> = self.consumer.redis.run(|c| {
                let mut script = scripts::FINISH.prepare_invoke();
                script
                    .key(keys::job(self.id))
                    .key(keys::events(self.id))
                    .key(self.consumer.stream())
                    .key(keys::cancel(self.id))
                    .arg(self.attempt)
                    .arg(self.entry)
                    .arg(json(&outcome.event))
                    .arg(duration_ms(self.consumer.config.result_ttl))
                    .arg("status")
                    .arg(outcome.status.as_str())
                    .arg("finished_ms")
                    .arg(now_ms());
                for (name, value) in &outcome.fields {
                    script.arg(name).arg(value.as_slice());
                }
                script.invoke(c)
            });
            match written {
                Ok(1) => {
                    tracing::info!(job = %self.id, status = outcome.status.as_str(), "job finished");
                    return;
                }
                Ok(_) => {
                    tracing::warn!(job = %self.id, "outcome not written: another attempt owns the job");
                    return;
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(job = %self.id, %error, "cannot write the job's outcome yet; retrying");
                    }
                    if failures > 3600 && !matches!(error, QueueError::Unreachable(_)) {
                        tracing::error!(job = %self.id, %error, "giving up writing the job's outcome");
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

fn sd_engine_base64(png: &[u8]) -> std::sync::Arc<str> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(png).into()
}
