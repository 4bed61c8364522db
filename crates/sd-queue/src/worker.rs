//! `sd-worker work`: drains one model's stream. Each job is claimed in Redis ([`scripts::START`]: attempt
//! counted, poison jobs failed), run on the in-process [`Engine`] exactly as `serve` runs it (so its images
//! are the single-process ones), its events copied to Redis as they happen, and its outcome written and the
//! stream entry acknowledged in one step ([`scripts::FINISH`]).
//!
//! No job is lost: an entry stays in the group's pending list until a worker acknowledges it. A heartbeat
//! thread keeps the running job's entry fresh (`XCLAIM` to itself), so only the entries of a worker that
//! stopped heartbeating go idle; after `claim_after` any worker takes them over (`XAUTOCLAIM`) and runs the
//! job again from the start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::Commands;
use sd_engine::Engine;

use crate::conn::{duration_ms, keys, now_ms, QueueError, Redis, GROUP};
use crate::registry::WorkerStatus;
use crate::run::{Outcome, Run};
use crate::{scripts, wire};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The model's name in the queue (`sd:jobs:{model}`); gateways route requests naming it here.
    pub model: String,
    pub worker_id: String,
    pub device: String,
    /// A pending job whose worker has not refreshed it for this long is taken over by another worker.
    pub claim_after: Duration,
    /// Attempts before a job that keeps killing its workers fails.
    pub max_attempts: u32,
    pub heartbeat: Duration,
    pub result_ttl: Duration,
}

/// What the heartbeat thread needs to know about the job being run.
#[derive(Default)]
struct Current {
    job: Option<(String, String)>,
    mean_job_ms: Option<f64>,
}

/// Registers the worker, then runs jobs until `stop` is set (the running job is finished first).
pub fn run(
    redis: Arc<Redis>,
    engine: Engine,
    config: WorkerConfig,
    stop: Arc<AtomicBool>,
) -> Result<(), QueueError> {
    let info = engine
        .model_info()
        .ok_or_else(|| QueueError::Redis("the model is not loaded".into()))?;
    let info_json = serde_json::to_string(&*info).map_err(|e| QueueError::Redis(e.to_string()))?;
    let current = Arc::new(Mutex::new(Current::default()));
    // Registration is retried by the heartbeat thread too, so a worker started before Redis still joins.
    let register = {
        let (model, info_json) = (config.model.clone(), info_json.clone());
        move |connection: &mut redis::Connection| -> redis::RedisResult<()> {
            let _: i64 = connection.hset(keys::MODELS, &model, &info_json)?;
            ensure_group(connection, &model)
        }
    };
    if let Err(error) = redis.run(&register) {
        tracing::warn!(%error, "cannot register with Redis yet; retrying");
    }
    spawn_heartbeat(
        Arc::clone(&redis),
        config.clone(),
        Arc::clone(&current),
        Arc::clone(&stop),
        register,
    )?;
    tracing::info!(model = %config.model, worker = %config.worker_id, "worker waiting for jobs");
    let mut consumer = Consumer {
        redis,
        engine,
        config,
        current,
    };
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::SeqCst) {
        match consumer.next_entry() {
            Ok(Some((entry, job))) => {
                backoff = Duration::from_millis(200);
                consumer.run_job(&entry, &job, &stop);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read jobs from Redis; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let _ = consumer.redis.run(|connection| {
        let _: i64 = connection.del(keys::worker(&consumer.config.worker_id))?;
        connection.srem::<_, _, i64>(keys::WORKERS, &consumer.config.worker_id)
    });
    tracing::info!("worker stopped");
    Ok(())
}

fn ensure_group(connection: &mut redis::Connection, model: &str) -> redis::RedisResult<()> {
    // From 0, not `$`: jobs queued before the group existed (or after Redis lost it) are still read.
    let created: redis::RedisResult<()> =
        connection.xgroup_create_mkstream(keys::stream(model), GROUP, "0");
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

fn spawn_heartbeat(
    redis: Arc<Redis>,
    config: WorkerConfig,
    current: Arc<Mutex<Current>>,
    stop: Arc<AtomicBool>,
    register: impl Fn(&mut redis::Connection) -> redis::RedisResult<()> + Send + 'static,
) -> Result<(), QueueError> {
    // Refresh the running entry well within `claim_after`, whatever the heartbeat interval.
    let period = config
        .heartbeat
        .min(config.claim_after / 3)
        .max(Duration::from_millis(50));
    let ttl = duration_ms(config.heartbeat.max(period) * 3);
    std::thread::Builder::new()
        .name("sd-queue-heartbeat".into())
        .spawn(move || {
            let mut registered = false;
            while !stop.load(Ordering::SeqCst) {
                let (job, mean_job_ms) = {
                    let current = current.lock().unwrap_or_else(PoisonError::into_inner);
                    (current.job.clone(), current.mean_job_ms)
                };
                let status = WorkerStatus {
                    id: config.worker_id.clone(),
                    model: config.model.clone(),
                    device: config.device.clone(),
                    job: job.as_ref().map(|(_, id)| id.clone()),
                    mean_job_ms,
                };
                let beat = redis.run(|connection| {
                    if !registered {
                        register(connection)?;
                    }
                    let json = serde_json::to_string(&status).unwrap_or_default();
                    let _: () = redis::cmd("SET")
                        .arg(keys::worker(&config.worker_id))
                        .arg(json)
                        .arg("PX")
                        .arg(ttl)
                        .query(connection)?;
                    let _: i64 = connection.sadd(keys::WORKERS, &config.worker_id)?;
                    if let Some((entry, _)) = &job {
                        // Resets the entry's idle time: it is alive, nobody should claim it.
                        let _: redis::Value = redis::cmd("XCLAIM")
                            .arg(keys::stream(&config.model))
                            .arg(GROUP)
                            .arg(&config.worker_id)
                            .arg(0)
                            .arg(entry)
                            .arg("JUSTID")
                            .query(connection)?;
                    }
                    Ok(())
                });
                match beat {
                    Ok(()) => registered = true,
                    Err(error) => {
                        registered = false;
                        tracing::warn!(%error, "heartbeat to Redis failed");
                    }
                }
                std::thread::sleep(period);
            }
        })
        .map_err(|error| {
            QueueError::Redis(format!("cannot start the heartbeat thread: {error}"))
        })?;
    Ok(())
}

type Entry = (String, Vec<(String, String)>);
type StreamEntries = (String, Vec<Entry>);

pub(crate) struct Consumer {
    pub(crate) redis: Arc<Redis>,
    pub(crate) engine: Engine,
    pub(crate) config: WorkerConfig,
    current: Arc<Mutex<Current>>,
}

impl Consumer {
    pub(crate) fn stream(&self) -> String {
        keys::stream(&self.config.model)
    }

    /// A job whose worker died (claimed), else the next new one (waits up to a second).
    fn next_entry(&self) -> Result<Option<(String, String)>, QueueError> {
        let stream = self.stream();
        let claimed: Result<(String, Vec<Entry>, redis::Value), QueueError> = self.redis.run(|c| {
            redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(&self.config.worker_id)
                .arg(duration_ms(self.config.claim_after))
                .arg("0-0")
                .arg("COUNT")
                .arg(1)
                .query(c)
        });
        match claimed {
            Ok((_, entries, _)) => {
                if let Some(found) = first_job(entries) {
                    tracing::warn!(job = %found.1, "taking over a job whose worker stopped");
                    return Ok(Some(found));
                }
            }
            Err(error) if is_nogroup(&error) => {
                self.redis.run(|c| ensure_group(c, &self.config.model))?;
                return Ok(None);
            }
            Err(error) => return Err(error),
        }
        let read: Result<Option<Vec<StreamEntries>>, QueueError> = self.redis.run(|c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.config.worker_id)
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query(c)
        });
        match read {
            Ok(streams) => Ok(streams
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(_, entries)| entries)
                .find_map(|entry| first_job(vec![entry]))),
            Err(error) if is_nogroup(&error) => {
                self.redis.run(|c| ensure_group(c, &self.config.model))?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    fn run_job(&mut self, entry: &str, id: &str, stop: &AtomicBool) {
        let started: Result<Vec<String>, QueueError> = self.redis.run(|c| {
            scripts::START
                .key(keys::job(id))
                .key(keys::events(id))
                .key(self.stream())
                .key(keys::cancel(id))
                .arg(entry)
                .arg(&self.config.worker_id)
                .arg(now_ms())
                .arg(self.config.max_attempts)
                .arg(duration_ms(self.config.result_ttl))
                .invoke(c)
        });
        let (attempt, request, created_ms) = match started {
            Ok(reply) => match reply.first().map(String::as_str) {
                Some("run") if reply.len() >= 4 => (
                    reply[1].clone(),
                    reply[2].clone(),
                    reply[3].parse::<u64>().unwrap_or_else(|_| now_ms()),
                ),
                Some("poison") => {
                    tracing::error!(job = %id, "job failed: too many attempts (poison job)");
                    return;
                }
                _ => return,
            },
            Err(error) => {
                // The entry stays pending; it is read again (claimed) once Redis is back.
                tracing::warn!(job = %id, %error, "cannot start the job");
                return;
            }
        };
        tracing::info!(job = %id, attempt = %attempt, "job started");
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .job = Some((entry.to_owned(), id.to_owned()));
        let begun = Instant::now();
        let run = Run {
            consumer: self,
            id,
            entry,
            attempt: &attempt,
            created_ms,
            started_ms: now_ms(),
        };
        let outcome = match wire::decode_request(&request) {
            Ok(request) => run.execute(request),
            Err(error) => Outcome::failed("bad_job_payload", error.to_string()),
        };
        run.finish(outcome, stop);
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.job = None;
        let ms = begun.elapsed().as_secs_f64() * 1000.0;
        current.mean_job_ms = Some(current.mean_job_ms.map_or(ms, |mean| 0.8 * mean + 0.2 * ms));
    }
}

fn is_nogroup(error: &QueueError) -> bool {
    matches!(error, QueueError::Redis(text) if text.contains("NOGROUP"))
}

fn first_job(entries: Vec<Entry>) -> Option<(String, String)> {
    entries.into_iter().find_map(|(entry, fields)| {
        let job = fields.into_iter().find(|(name, _)| name == "job")?.1;
        Some((entry, job))
    })
}
