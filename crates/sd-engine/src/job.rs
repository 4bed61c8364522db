//! What a job is: its id, request, status, outcome and timings, and the read-only [`JobSnapshot`] the
//! engine hands out. A [`JobRecord`] is the engine's mutable record and only lives behind the engine lock.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use sd_core::pipeline::GenerateRequest;

use tokio::sync::broadcast;

use crate::events::JobEvent;

pub type JobId = String;

// The wire types live in `sd-api-types` (shared with the client SDK); re-exported here under their old paths.
pub use sd_api_types::{JobError, JobStatus, JobTimings, Operation, Progress};

/// A request that has passed validation: the engine runs it as it is and never re-checks it.
#[derive(Clone, Debug)]
pub struct JobRequest {
    pub operation: Operation,
    pub generate: GenerateRequest,
}

/// A finished job's images as PNG files.
#[derive(Clone, Debug)]
pub struct JobOutput {
    pub images: Vec<Bytes>,
    /// The same images in base64, encoded once when the job finished and shared by every subscriber (a late
    /// subscriber must not re-encode them, least of all under the engine lock).
    pub base64: Vec<Arc<str>>,
    pub seeds: Vec<u64>,
    /// The VAE decoded the images in tiles (memory required it, or tiling was forced on).
    pub vae_tiled: bool,
    /// The prompts exactly as the request gave them (with any A1111 syntax), as the PNG metadata carries them.
    pub prompt: String,
    pub negative_prompt: String,
    /// What the caller should know that did not fail the job (e.g. a truncated plain prompt).
    pub warnings: Vec<String>,
    /// The model that made the images (A1111's `Model`) and its short hash (`Model hash`), when known.
    pub model: String,
    pub model_hash: Option<String>,
}

/// A consistent copy of one job's state.
#[derive(Clone, Debug)]
pub struct JobSnapshot {
    pub id: JobId,
    pub operation: Operation,
    pub status: JobStatus,
    /// 1 = next to start; only while queued.
    pub position: Option<usize>,
    pub progress: Option<Progress>,
    pub seeds: Vec<u64>,
    /// The output size (after any resizing of input images), in pixels.
    pub width: usize,
    pub height: usize,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub image_count: usize,
    /// Whether the VAE decoded the images in tiles; `None` until the job succeeds.
    pub vae_tiled: Option<bool>,
    pub error: Option<JobError>,
    pub timings: Option<JobTimings>,
    /// For a finished job: its prompts as given and its warnings (see [`JobOutput`]).
    pub prompt: Option<(String, String)>,
    pub warnings: Vec<String>,
    /// For a finished job: the model name and short hash (see [`JobOutput`]).
    pub model: Option<(String, Option<String>)>,
}

pub(crate) struct JobRecord {
    pub id: JobId,
    /// The library name of the model that runs it (resolved at submit).
    pub model: String,
    pub operation: Operation,
    pub status: JobStatus,
    /// Taken by the model thread when the job starts.
    pub request: Option<GenerateRequest>,
    pub seeds: Vec<u64>,
    pub size: (usize, usize),
    pub cancel: Arc<AtomicBool>,
    pub created_at: SystemTime,
    pub created: Instant,
    pub started_at: Option<SystemTime>,
    pub started: Option<Instant>,
    pub finished_at: Option<SystemTime>,
    pub finished: Option<Instant>,
    pub progress: Option<Progress>,
    /// The latest preview, for subscribers who join a running job.
    pub last_preview: Option<JobEvent>,
    pub output: Option<JobOutput>,
    pub error: Option<JobError>,
    pub timings: Option<JobTimings>,
    /// Live events; dropped when the job finishes so that subscribers see the stream end.
    pub events: Option<broadcast::Sender<JobEvent>>,
    /// Somebody has had the result (an image, or the terminal event): the caps may now evict it.
    pub read: bool,
    /// What the result is expected to weigh, held against the byte budget until the job finishes.
    pub estimated_bytes: usize,
}

/// Events a slow subscriber may fall behind by before it skips ahead (it never misses the terminal event,
/// which is always the newest).
const EVENT_BUFFER: usize = 64;

/// A result's expected size before it exists: an 8-bit RGB image barely compresses in the worst case, and its
/// base64 copy adds a third again.
pub(crate) fn estimated_result_bytes(width: usize, height: usize, images: usize) -> usize {
    let png = width.saturating_mul(height).saturating_mul(3);
    png.saturating_add(png / 3 * 4)
        .saturating_mul(images.max(1))
}

impl JobRecord {
    pub fn new(id: JobId, request: JobRequest) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let estimated_bytes = estimated_result_bytes(
            request.generate.width,
            request.generate.height,
            request.generate.seeds.len(),
        );
        Self {
            id,
            model: String::new(),
            operation: request.operation,
            status: JobStatus::Queued,
            seeds: request.generate.seeds.clone(),
            size: (request.generate.width, request.generate.height),
            request: Some(request.generate),
            cancel: Arc::new(AtomicBool::new(false)),
            created_at: SystemTime::now(),
            created: Instant::now(),
            started_at: None,
            started: None,
            finished_at: None,
            finished: None,
            progress: None,
            last_preview: None,
            output: None,
            error: None,
            timings: None,
            events: Some(events),
            read: false,
            estimated_bytes,
        }
    }

    /// Bytes the finished result holds: its PNG files and their base64 copies.
    pub fn result_bytes(&self) -> usize {
        self.output.as_ref().map_or(0, |output| {
            output.images.iter().map(Bytes::len).sum::<usize>()
                + output.base64.iter().map(|text| text.len()).sum::<usize>()
        })
    }

    pub fn publish(&self, event: JobEvent) {
        if let Some(events) = &self.events {
            // No receivers is normal: nobody is watching this job.
            let _ = events.send(event);
        }
    }

    pub fn snapshot(&self, position: Option<usize>) -> JobSnapshot {
        JobSnapshot {
            id: self.id.clone(),
            operation: self.operation,
            status: self.status,
            position,
            progress: self.progress,
            seeds: self.seeds.clone(),
            width: self.size.0,
            height: self.size.1,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            image_count: self.output.as_ref().map_or(0, |output| output.images.len()),
            vae_tiled: self.output.as_ref().map(|output| output.vae_tiled),
            error: self.error.clone(),
            timings: self.timings.clone(),
            prompt: self
                .output
                .as_ref()
                .map(|o| (o.prompt.clone(), o.negative_prompt.clone())),
            warnings: self
                .output
                .as_ref()
                .map_or_else(Vec::new, |o| o.warnings.clone()),
            model: self
                .output
                .as_ref()
                .map(|o| (o.model.clone(), o.model_hash.clone())),
        }
    }
}
