//! Running a synchronous OpenAI or A1111 request on the shared engine: its images are split into as few jobs as
//! the limits allow, submitted one after another (so a long request never holds more than one queue slot),
//! and awaited. A request whose client goes away cancels its job; an A1111 `interrupt` or `skip` goes through
//! [`Control`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use sd_core::pipeline::GenerateRequest;
use sd_engine::{JobError, JobEvent, JobRequest, JobService, JobStatus, Operation, SubmitError};
use tokio::sync::broadcast::error::RecvError;

use crate::compat::CompatError;
use crate::error::ApiError;
use crate::validate::Limits;

/// One image of the result: the engine's PNG (with its infotext), its seed, and where the engine keeps it.
#[derive(Clone, Debug)]
pub struct Produced {
    pub png: Bytes,
    pub seed: u64,
    pub job_id: String,
    /// Index of the image within its job.
    pub offset: usize,
}

/// What happened, as it happens.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// Job `batch` of `batches` was queued as `job_id`.
    Submitted {
        job_id: &'a str,
        batch: usize,
        batches: usize,
    },
    Progress {
        step: usize,
        total: usize,
    },
    /// A small base64 PNG preview of the job's first image.
    Preview {
        step: usize,
        image: &'a str,
    },
    /// Image `index` of the whole request is ready.
    Image {
        index: usize,
        image: &'a Produced,
    },
}

#[derive(Debug)]
pub struct Outcome {
    pub images: Vec<Produced>,
    /// Stopped early (interrupt or an outside cancel); `images` holds what finished.
    pub interrupted: bool,
}

/// Lets another request stop this one: `interrupt` ends it, `skip` drops only the job in progress.
#[derive(Debug, Default)]
pub struct Control {
    current: Mutex<Option<String>>,
    interrupted: AtomicBool,
    skipped: AtomicBool,
}

impl Control {
    pub fn interrupt(&self, engine: &dyn JobService) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.cancel_current(engine);
    }

    pub fn skip(&self, engine: &dyn JobService) {
        self.skipped.store(true, Ordering::SeqCst);
        self.cancel_current(engine);
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    pub fn is_skipped(&self) -> bool {
        self.skipped.load(Ordering::SeqCst)
    }

    /// The engine job in progress, if any.
    pub fn current_job(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn cancel_current(&self, engine: &dyn JobService) {
        if let Some(id) = self.current_job() {
            // An already finished job needs no cancelling.
            let _ = engine.cancel(&id);
        }
    }

    fn set_current(&self, id: Option<String>) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = id;
    }
}

/// Cancels the job if the request future is dropped (the client went away) before the job finished.
struct CancelOnDrop<'a> {
    engine: &'a dyn JobService,
    id: Option<String>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            tracing::info!(job = %id, "client went away; cancelling its job");
            let _ = self.engine.cancel(&id);
        }
    }
}

/// How many images one job may hold: the batch limit, and the pixel budget at this size.
pub fn images_per_job(request: &GenerateRequest, limits: &Limits) -> usize {
    let pixels = (request.width * request.height).max(1) as i64;
    let by_pixels = (limits.max_pixels / pixels).max(1);
    limits.max_batch.min(by_pixels).max(1) as usize
}

/// Runs `request` (one image per seed) as consecutive jobs of at most `batch_size` images, on the model
/// `model` names (`None`: the default one), and waits for all of them.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: &dyn JobService,
    model: Option<&str>,
    limits: &Limits,
    operation: Operation,
    request: GenerateRequest,
    batch_size: usize,
    control: Arc<Control>,
    on_event: &mut (dyn FnMut(RunEvent<'_>) + Send),
) -> Result<Outcome, CompatError> {
    let per_job = images_per_job(&request, limits).min(batch_size.max(1));
    let chunks: Vec<Vec<u64>> = request.seeds.chunks(per_job).map(<[u64]>::to_vec).collect();
    let batches = chunks.len();
    let mut images = Vec::with_capacity(request.seeds.len());
    for (batch, seeds) in chunks.into_iter().enumerate() {
        if control.is_interrupted() {
            return Ok(Outcome {
                images,
                interrupted: true,
            });
        }
        let mut generate = request.clone();
        generate.seeds = seeds.clone();
        let submitted = engine
            .submit_to(
                model,
                JobRequest {
                    operation,
                    generate,
                },
            )
            .map_err(|error| submit_error(engine, error))?;
        let mut guard = CancelOnDrop {
            engine,
            id: Some(submitted.id.clone()),
        };
        control.set_current(Some(submitted.id.clone()));
        if control.is_interrupted() {
            let _ = engine.cancel(&submitted.id);
        }
        on_event(RunEvent::Submitted {
            job_id: &submitted.id,
            batch,
            batches,
        });
        let end = wait(engine, &submitted.id, on_event).await;
        guard.id = None;
        control.set_current(None);
        match end? {
            JobStatus::Succeeded => {
                for (offset, &seed) in seeds.iter().enumerate() {
                    let png = engine.image(&submitted.id, offset).map_err(|error| {
                        ApiError::Internal(format!("the finished job lost its images: {error}"))
                    })?;
                    let produced = Produced {
                        png,
                        seed,
                        job_id: submitted.id.clone(),
                        offset,
                    };
                    on_event(RunEvent::Image {
                        index: images.len(),
                        image: &produced,
                    });
                    images.push(produced);
                }
            }
            _ if control.skipped.swap(false, Ordering::SeqCst) && !control.is_interrupted() => {
                continue
            }
            _ => {
                return Ok(Outcome {
                    images,
                    interrupted: true,
                })
            }
        }
    }
    Ok(Outcome {
        images,
        interrupted: false,
    })
}

fn submit_error(engine: &dyn JobService, error: SubmitError) -> CompatError {
    CompatError::Api(match error {
        SubmitError::QueueFull { retry_after } => ApiError::QueueFull { retry_after },
        SubmitError::ResultsFull { retry_after } => ApiError::ResultsFull { retry_after },
        SubmitError::NotReady => ApiError::not_ready(engine.readiness()),
        SubmitError::ShuttingDown => ApiError::ShuttingDown,
        SubmitError::Unavailable(reason) => ApiError::QueueUnavailable(reason),
        SubmitError::UnknownModel(unknown) => crate::routes::jobs::unknown_model(&unknown).into(),
    })
}

/// Follows the job's events to its end: `Succeeded` or `Cancelled`; a failure is an error.
async fn wait(
    engine: &dyn JobService,
    id: &str,
    on_event: &mut (dyn FnMut(RunEvent<'_>) + Send),
) -> Result<JobStatus, CompatError> {
    let subscription = engine
        .subscribe(id)
        .ok_or_else(|| ApiError::Internal(format!("job {id} vanished")))?;
    for event in &subscription.snapshot {
        if let Some(end) = observe(event, on_event) {
            return end;
        }
    }
    if let Some(mut live) = subscription.live {
        loop {
            match live.recv().await {
                Ok(event) => {
                    if let Some(end) = observe(&event, on_event) {
                        return end;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            }
        }
    }
    // The stream closed without a terminal event we saw: ask the record.
    match engine.job(id) {
        Some(job) if job.status == JobStatus::Succeeded => Ok(JobStatus::Succeeded),
        Some(job) if job.status == JobStatus::Failed => {
            Err(CompatError::JobFailed(job.error.unwrap_or_else(|| {
                JobError::new("generation_failed", "the job failed")
            })))
        }
        _ => Ok(JobStatus::Cancelled),
    }
}

fn observe(
    event: &JobEvent,
    on_event: &mut (dyn FnMut(RunEvent<'_>) + Send),
) -> Option<Result<JobStatus, CompatError>> {
    match event {
        JobEvent::Progress { step, total, .. } => {
            on_event(RunEvent::Progress {
                step: *step,
                total: *total,
            });
            None
        }
        JobEvent::Preview { step, image } => {
            on_event(RunEvent::Preview { step: *step, image });
            None
        }
        JobEvent::Complete { .. } => Some(Ok(JobStatus::Succeeded)),
        JobEvent::Cancelled {} => Some(Ok(JobStatus::Cancelled)),
        JobEvent::Error { code, message } => Some(Err(CompatError::JobFailed(JobError::new(
            code.clone(),
            message.clone(),
        )))),
        JobEvent::Queued { .. } | JobEvent::Started {} | JobEvent::Loading { .. } => None,
    }
}
