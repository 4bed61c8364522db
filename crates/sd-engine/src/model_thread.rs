//! The model thread: the only code that touches the backend. It loads the model, then runs one job at a time
//! from the queue, turning step callbacks into progress and preview events, honouring cancellation between
//! steps and inside them (see [`sd_core::interrupt`]), and recording the outcome. A failing or panicking job
//! fails only itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use sd_core::pipeline::{GenerateOutput, GenerateRequest, StepControl};
use sd_core::CoreError;

use crate::backend::{Backend, Loader, StepProgress};
use crate::engine::{Readiness, Shared};
use crate::events::{base64_png, JobEvent};
use crate::job::{JobError, JobId, JobOutput, JobStatus, JobTimings, Progress};
use crate::metadata;
use crate::models::{Loaded, LoadedModels, ModelSet};

pub(crate) fn spawn(shared: Arc<Shared>, models: ModelSet) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sd-model".into())
        .spawn(move || run(&shared, models))?;
    Ok(())
}

fn run(shared: &Shared, models: ModelSet) {
    let mut loaded = LoadedModels::new(models.max_loaded, models.memory_budget);
    let mut failures = Vec::new();
    let mut first = None;
    for (name, loader) in models.initial {
        match load(shared, &name, loader) {
            Ok(backend) => {
                first = Some((name, backend));
                break;
            }
            Err(reason) => failures.push(reason),
        }
    }
    let Some((name, backend)) = first else {
        return fail_load(shared, failures.join("; "));
    };
    let name = if name.is_empty() {
        metadata::model_name(&backend.info().model)
    } else {
        name
    };
    for reason in &failures {
        tracing::warn!(%reason, model = %name, "an earlier model failed to load; serving this one");
    }
    let info = Arc::new(backend.info().clone());
    let _ = shared.model_hash.set(backend.model_hash().cloned());
    remember(shared, &name, &*backend);
    let bytes = shared
        .library
        .as_ref()
        .and_then(|library| library.get(&name))
        .map_or(0, |model| crate::models::estimated_bytes(&model.path));
    loaded.insert(Loaded {
        name: name.clone(),
        backend,
        bytes,
    });
    {
        let mut state = shared.lock();
        state.default_model = name;
        state.loaded = loaded.names();
    }
    shared.readiness.send_replace(Readiness::Ready(info));
    while let Some(job) = next_job(shared) {
        if loaded.touch(&job.model).is_none() {
            if let Err(error) = switch(shared, &mut loaded, &job) {
                fail_unstarted(shared, &job, error);
                continue;
            }
        }
        let Some(backend) = loaded.touch(&job.model) else {
            continue;
        };
        run_job(shared, backend, job);
    }
    tracing::info!("model thread exits");
}

/// Runs a loader, catching its panics; logs and counts a successful load.
fn load(shared: &Shared, name: &str, loader: Loader) -> Result<Box<dyn Backend>, String> {
    let started = Instant::now();
    let backend = match catch_unwind(AssertUnwindSafe(loader)) {
        Ok(Ok(backend)) => backend,
        Ok(Err(reason)) => return Err(reason),
        Err(panic) => return Err(format!("model loader panicked: {}", panic_message(&*panic))),
    };
    let seconds = started.elapsed().as_secs_f64();
    shared.metrics.loaded(seconds);
    tracing::info!(model = %backend.info().model, name, seconds, "model loaded");
    Ok(backend)
}

/// Tells the library what a loaded model is (its info and hash), for listings and request validation.
fn remember(shared: &Shared, name: &str, backend: &dyn Backend) {
    if let Some(library) = &shared.library {
        library.set_info(name, Arc::new(backend.info().clone()));
        if let Some(hash) = backend.model_hash() {
            library.set_hash(name, hash.clone());
        }
    }
}

/// Loads the model `job` names (evicting least recently used ones first); the job's watchers get a
/// `loading` event. An `Err` fails this job only.
fn switch(shared: &Shared, loaded: &mut LoadedModels, job: &ActiveJob) -> Result<(), JobError> {
    let unknown = || {
        JobError::new(
            "unknown_model",
            format!("model `{}` is no longer in the library", job.model),
        )
    };
    let library = shared.library.as_ref().ok_or_else(unknown)?;
    let model = library.get(&job.model).ok_or_else(unknown)?;
    let loader = library.loader(&job.model).ok_or_else(unknown)?;
    {
        let mut state = shared.lock();
        if let Some(record) = state.store.get(&job.id) {
            record.publish(JobEvent::Loading {
                model: job.model.clone(),
            });
        }
        state.loading = Some(job.model.clone());
    }
    let bytes = crate::models::estimated_bytes(&model.path);
    let evicted = loaded.make_room(bytes);
    if !evicted.is_empty() {
        tracing::info!(?evicted, model = %job.model, "unloading models to make room");
    }
    let result = load(shared, &job.model, loader);
    let mut state = shared.lock();
    state.loading = None;
    match result {
        Ok(backend) => {
            drop(state);
            remember(shared, &job.model, &*backend);
            loaded.insert(Loaded {
                name: job.model.clone(),
                backend,
                bytes,
            });
            shared.lock().loaded = loaded.names();
            Ok(())
        }
        Err(reason) => {
            state.loaded = loaded.names();
            drop(state);
            tracing::warn!(model = %job.model, %reason, "model failed to load");
            Err(JobError::new(
                "model_load_failed",
                format!("model `{}` failed to load: {reason}", job.model),
            ))
        }
    }
}

/// Ends a started job that could not run (its model did not load).
fn fail_unstarted(shared: &Shared, job: &ActiveJob, error: JobError) {
    let (status, event, _, error, timings) = failed(error);
    let mut state = shared.lock();
    if let Some(record) = state.store.get_mut(&job.id) {
        record.error = error.clone();
        record.timings = Some(JobTimings {
            queue_ms: job.queue_ms,
            ..timings
        });
    }
    state.finish(&job.id, status, event, &shared.metrics);
    state.running = None;
    drop(state);
    if let Some(error) = error {
        tracing::warn!(job = %job.id, code = %error.code, message = %error.message, "job failed");
    }
}

fn fail_load(shared: &Shared, reason: String) {
    // Not logged as an error here: `/ready` reports it and `serve` exits with it, once.
    tracing::debug!(%reason, "model failed to load");
    shared.readiness.send_replace(Readiness::Failed(reason));
}

struct ActiveJob {
    id: JobId,
    /// The library name of the model that runs it.
    model: String,
    request: GenerateRequest,
    cancel: Arc<AtomicBool>,
    queue_ms: f64,
}

/// Blocks until a job is waiting (and marks it running) or the engine says exit.
fn next_job(shared: &Shared) -> Option<ActiveJob> {
    let mut state = shared.lock();
    loop {
        if state.exit {
            return None;
        }
        if let Some(id) = state.queue.pop() {
            let record = match state.store.get_mut(&id) {
                Some(record) => record,
                None => continue,
            };
            let Some(request) = record.request.take() else {
                continue;
            };
            let model = record.model.clone();
            let now = Instant::now();
            record.status = JobStatus::Running;
            record.started_at = Some(SystemTime::now());
            record.started = Some(now);
            record.publish(JobEvent::Started {});
            let queue_ms = now.duration_since(record.created).as_secs_f64() * 1000.0;
            let cancel = Arc::clone(&record.cancel);
            state.running = Some(id.clone());
            state.announce_positions();
            shared.metrics.started(queue_ms / 1000.0);
            tracing::debug!(job = %id, queue_ms, "job started");
            return Some(ActiveJob {
                id,
                model,
                request,
                cancel,
                queue_ms,
            });
        }
        state = shared
            .wake
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

fn run_job(shared: &Shared, backend: &dyn Backend, job: ActiveJob) {
    let started = Instant::now();
    let mut last_step = started;
    let mut last_preview: Option<Instant> = None;
    let mut on_step = |progress: &StepProgress<'_>| -> StepControl {
        if job.cancel.load(Ordering::SeqCst) {
            return StepControl::Stop;
        }
        let now = Instant::now();
        shared
            .metrics
            .step(now.duration_since(last_step).as_secs_f64());
        last_step = now;
        let preview = match shared.config.preview_interval {
            Some(interval) if last_preview.is_none_or(|at| now.duration_since(at) >= interval) => {
                last_preview = Some(now);
                preview_event(progress)
            }
            _ => None,
        };
        let progress = progress_of(
            progress.step,
            progress.total,
            started.elapsed().as_secs_f64(),
        );
        let mut state = shared.lock();
        if let Some(record) = state.store.get_mut(&job.id) {
            record.progress = Some(progress);
            record.publish(JobEvent::Progress {
                step: progress.step,
                total: progress.total,
                percent: progress.percent,
                eta_ms: progress.eta_ms,
            });
            if let Some(preview) = preview {
                record.publish(preview.clone());
                record.last_preview = Some(preview);
            }
        }
        drop(state);
        if job.cancel.load(Ordering::SeqCst) {
            StepControl::Stop
        } else {
            StepControl::Continue
        }
    };
    // The cancel flag is also checked inside a step (between UNet blocks), so a long step stops promptly.
    let result = catch_unwind(AssertUnwindSafe(|| {
        sd_core::interrupt::scope(&job.cancel, || backend.generate(&job.request, &mut on_step))
    }));
    let generate_ms = started.elapsed().as_secs_f64() * 1000.0;

    let (status, event, output, error, mut timings) = match result {
        _ if job.cancel.load(Ordering::SeqCst) => cancelled(),
        Ok(Err(CoreError::Cancelled)) => cancelled(),
        Ok(Ok(generated)) => match encode_output(generated, &job.request, backend) {
            Ok((output, timings, images)) => {
                let event = JobEvent::Complete {
                    images,
                    seeds: output.seeds.clone(),
                    timings: timings.clone(),
                };
                (JobStatus::Succeeded, event, Some(output), None, timings)
            }
            Err(error) => failed(error),
        },
        Ok(Err(error)) => failed(job_error(&error)),
        Err(panic) => failed(JobError::new(
            "internal_error",
            format!("generation panicked: {}", panic_message(&*panic)),
        )),
    };
    timings.queue_ms = job.queue_ms;
    timings.generate_ms = generate_ms;
    timings.total_ms = job.queue_ms + started.elapsed().as_secs_f64() * 1000.0;
    let event = match event {
        JobEvent::Complete { images, seeds, .. } => JobEvent::Complete {
            images,
            seeds,
            timings: timings.clone(),
        },
        other => other,
    };

    let mut state = shared.lock();
    if let Some(record) = state
        .store
        .get_mut(&job.id)
        .filter(|record| !record.status.is_finished())
    {
        record.output = output;
        record.error = error.clone();
        record.timings = Some(timings.clone());
    }
    state.finish(&job.id, status, event, &shared.metrics);
    state.running = None;
    let seconds = timings.total_ms / 1000.0 - timings.queue_ms / 1000.0;
    state.mean_job_seconds = Some(
        state
            .mean_job_seconds
            .map_or(seconds, |mean| 0.8 * mean + 0.2 * seconds),
    );
    drop(state);
    match error {
        Some(error) => {
            tracing::warn!(job = %job.id, code = %error.code, message = %error.message, "job failed")
        }
        None => {
            tracing::info!(job = %job.id, status = status.as_str(), generate_ms, "job finished")
        }
    }
}

type Finished = (
    JobStatus,
    JobEvent,
    Option<JobOutput>,
    Option<JobError>,
    JobTimings,
);

fn cancelled() -> Finished {
    (
        JobStatus::Cancelled,
        JobEvent::Cancelled {},
        None,
        None,
        JobTimings::default(),
    )
}

fn failed(error: JobError) -> Finished {
    let event = JobEvent::Error {
        code: error.code.clone(),
        message: error.message.clone(),
    };
    (
        JobStatus::Failed,
        event,
        None,
        Some(error),
        JobTimings::default(),
    )
}

/// PNG-encodes the images, each stamped with its A1111 infotext (stored as bytes, sent as base64), and
/// carries over the core's timings.
fn encode_output(
    generated: GenerateOutput,
    request: &GenerateRequest,
    backend: &dyn Backend,
) -> Result<(JobOutput, JobTimings, Vec<Arc<str>>), JobError> {
    let started = Instant::now();
    let images = generated
        .images
        .iter()
        .enumerate()
        .map(|(index, image)| {
            let mut params =
                metadata::generation_params(request, backend.info(), backend.model_hash(), index);
            if let Some(&seed) = generated.seeds.get(index) {
                params.seed = seed;
            }
            if generated.vae_tiled {
                params.extra.push(metadata::vae_tiled_param());
            }
            metadata::lora_hash::add_lora_hashes(&mut params, &generated.loras);
            let infotext = params.to_infotext().to_text();
            metadata::encode_png(image, Some(&infotext))
                .map(Bytes::from)
                .map_err(|error| JobError::new("encode_failed", error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for warning in &generated.warnings {
        tracing::warn!(%warning, "generation warning");
    }
    let base64: Vec<Arc<str>> = images.iter().map(|png| base64_png(png)).collect();
    let timings = JobTimings {
        text_encode_ms: generated.timings.text_encode_ms,
        denoise_ms: generated.timings.denoise_ms,
        decode_ms: generated.timings.decode_ms,
        encode_ms: started.elapsed().as_secs_f64() * 1000.0,
        ..JobTimings::default()
    };
    Ok((
        JobOutput {
            images,
            base64: base64.clone(),
            seeds: generated.seeds,
            vae_tiled: generated.vae_tiled,
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            warnings: generated.warnings,
            model: metadata::model_name(&backend.info().model),
            model_hash: backend.model_hash().map(|hash| hash.short().to_owned()),
        },
        timings,
        base64,
    ))
}

fn preview_event(progress: &StepProgress<'_>) -> Option<JobEvent> {
    let image = match progress.preview() {
        Ok(image) => image,
        Err(error) => {
            tracing::debug!(%error, "no preview");
            return None;
        }
    };
    let png = metadata::encode_png(&image, None).ok()?;
    Some(JobEvent::Preview {
        step: progress.step,
        image: base64_png(&png),
    })
}

fn progress_of(step: usize, total: usize, elapsed_seconds: f64) -> Progress {
    let total = total.max(1);
    let step = step.min(total);
    let per_step = if step == 0 {
        0.0
    } else {
        elapsed_seconds / step as f64
    };
    Progress {
        step,
        total,
        percent: 100.0 * step as f64 / total as f64,
        eta_ms: (per_step * (total - step) as f64 * 1000.0).round() as u64,
    }
}

/// A stable code for each kind of core failure; out-of-memory is called out so clients can retry smaller.
fn job_error(error: &CoreError) -> JobError {
    let message = error.to_string();
    let lower = message.to_ascii_lowercase();
    let code = if ["out of memory", "out_of_memory", "failed to allocate"]
        .iter()
        .any(|needle| lower.contains(needle))
    {
        "out_of_memory"
    } else {
        match error {
            CoreError::InvalidInput(_) => "invalid_input",
            CoreError::Unsupported(_) => "unsupported",
            CoreError::NotAvailable(_) => "not_available",
            _ => "generation_failed",
        }
    };
    JobError::new(code, message)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
