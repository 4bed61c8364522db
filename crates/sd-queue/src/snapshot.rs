//! A job's hash in Redis read back as the engine's [`JobSnapshot`], so that every route shows a fleet job
//! exactly as it shows an in-process one.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sd_engine::{JobError, JobSnapshot, JobStatus, JobTimings, Operation, Progress};

/// The hash fields a snapshot needs (images and the request are left in Redis).
pub const FIELDS: &[&str] = &[
    "id",
    "model",
    "status",
    "operation",
    "seeds",
    "width",
    "height",
    "created_ms",
    "started_ms",
    "finished_ms",
    "progress",
    "error",
    "timings",
    "vae_tiled",
    "prompt",
    "negative_prompt",
    "warnings",
    "model",
    "model_hash",
    "image_count",
    "entry",
];

/// The fields as `HMGET` returned them, by name.
pub struct JobFields(HashMap<&'static str, String>);

impl JobFields {
    pub fn new(values: Vec<Option<String>>) -> Self {
        Self(
            FIELDS
                .iter()
                .zip(values)
                .filter_map(|(name, value)| value.map(|value| (*name, value)))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.get(name)
            .and_then(|text| serde_json::from_str(text).ok())
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|text| text.parse().ok())
    }

    fn time(&self, name: &str) -> Option<SystemTime> {
        self.number(name)
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// `None` when the hash is gone (expired or never existed).
    pub fn status(&self) -> Option<JobStatus> {
        status_from(self.get("status")?)
    }

    pub fn snapshot(&self, position: Option<usize>) -> Option<JobSnapshot> {
        let status = self.status()?;
        let operation: Operation = self
            .get("operation")
            .and_then(|text| {
                serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
            })
            .unwrap_or(Operation::ImageGeneration);
        let prompt = match (self.get("prompt"), self.get("negative_prompt")) {
            (Some(prompt), Some(negative)) => Some((prompt.to_owned(), negative.to_owned())),
            _ => None,
        };
        Some(JobSnapshot {
            id: self.get("id")?.to_owned(),
            operation,
            status,
            position: (status == JobStatus::Queued).then_some(position.unwrap_or(1)),
            progress: self.json::<Progress>("progress"),
            seeds: self.json("seeds").unwrap_or_default(),
            width: self.number("width").unwrap_or(0) as usize,
            height: self.number("height").unwrap_or(0) as usize,
            created_at: self.time("created_ms").unwrap_or(UNIX_EPOCH),
            started_at: self.time("started_ms"),
            finished_at: self.time("finished_ms"),
            image_count: self.number("image_count").unwrap_or(0) as usize,
            vae_tiled: self.get("vae_tiled").map(|text| text == "1"),
            error: self.json::<JobError>("error"),
            timings: self.json::<JobTimings>("timings"),
            prompt,
            warnings: self.json("warnings").unwrap_or_default(),
            model: self
                .get("model")
                .map(|model| (model.to_owned(), self.get("model_hash").map(str::to_owned))),
        })
    }
}

pub fn status_from(text: &str) -> Option<JobStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_hash_reads_back() {
        let mut values = vec![None; FIELDS.len()];
        let mut set = |name: &str, value: &str| {
            let index = FIELDS.iter().position(|field| *field == name).unwrap();
            values[index] = Some(value.to_owned());
        };
        set("id", "j1");
        set("status", "succeeded");
        set("operation", "image_transform");
        set("seeds", "[4,5]");
        set("width", "64");
        set("created_ms", "1000");
        set("image_count", "2");
        set("vae_tiled", "0");
        set("prompt", "p");
        set("negative_prompt", "n");
        let job = JobFields::new(values).snapshot(None).unwrap();
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.operation, Operation::ImageTransform);
        assert_eq!(job.seeds, vec![4, 5]);
        assert_eq!(job.image_count, 2);
        assert_eq!(job.vae_tiled, Some(false));
        assert_eq!(job.position, None);
        assert_eq!(job.created_at, UNIX_EPOCH + Duration::from_secs(1));
    }
}
