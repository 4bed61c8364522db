//! Every job the engine knows, and forgetting finished ones: after the result TTL, or sooner when more than
//! `max_finished` have piled up (oldest first). Active jobs are bounded by the queue, so memory is bounded.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::job::{JobId, JobRecord};

pub(crate) struct JobStore {
    jobs: HashMap<JobId, JobRecord>,
    /// Finished jobs in the order they finished.
    finished: VecDeque<(Instant, JobId)>,
    ttl: Duration,
    max_finished: usize,
}

impl JobStore {
    pub fn new(ttl: Duration, max_finished: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            finished: VecDeque::new(),
            ttl,
            max_finished,
        }
    }

    pub fn insert(&mut self, record: JobRecord) {
        self.jobs.insert(record.id.clone(), record);
    }

    pub fn get(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut JobRecord> {
        self.jobs.get_mut(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    /// Starts the TTL of a job that just finished.
    pub fn mark_finished(&mut self, id: &str, at: Instant) {
        self.finished.push_back((at, id.to_owned()));
        self.sweep(at);
    }

    /// Forgets expired finished jobs and the oldest beyond the cap.
    pub fn sweep(&mut self, now: Instant) {
        while let Some((finished, id)) = self.finished.front() {
            let expired = now.saturating_duration_since(*finished) >= self.ttl;
            if !expired && self.finished.len() <= self.max_finished {
                break;
            }
            self.jobs.remove(id);
            self.finished.pop_front();
        }
    }
}
