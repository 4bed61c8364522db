//! Every job the engine knows, and forgetting finished ones. A finished job is kept for the result TTL; the
//! count cap (`max_finished`) and the byte budget (`max_result_bytes`) only ever evict results somebody has
//! read (an image fetched, or the terminal event delivered), oldest first. Unread results stay until their
//! TTL, so when they alone fill the caps the engine refuses new jobs instead ([`JobStore::room_for`]).
//! Dropped ids are remembered (a bounded list) so that they answer "expired" rather than "unknown".

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::job::{JobId, JobRecord};

/// How many dropped ids are remembered for the "expired" answer (a few dozen bytes each).
const REMEMBERED_GONE: usize = 10_000;

pub(crate) struct JobStore {
    jobs: HashMap<JobId, JobRecord>,
    /// Finished jobs in the order they finished.
    finished: VecDeque<(Instant, JobId)>,
    ttl: Duration,
    max_finished: usize,
    max_bytes: usize,
    /// Bytes of the finished results held.
    bytes: usize,
    /// Estimated bytes of the results of jobs not finished yet.
    reserved: usize,
    gone: VecDeque<JobId>,
    gone_set: HashSet<JobId>,
}

/// Why a new job cannot be accepted now, and when to try again.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoRoom {
    /// Until the oldest unread result expires; `None` when only unfinished jobs hold the room.
    pub retry_after: Option<Duration>,
}

impl JobStore {
    pub fn new(ttl: Duration, max_finished: usize, max_bytes: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            finished: VecDeque::new(),
            ttl,
            max_finished,
            max_bytes,
            bytes: 0,
            reserved: 0,
            gone: VecDeque::new(),
            gone_set: HashSet::new(),
        }
    }

    pub fn insert(&mut self, record: JobRecord) {
        self.reserved += record.estimated_bytes;
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

    /// Whether `id` was a job whose result has been dropped (TTL or caps).
    pub fn is_gone(&self, id: &str) -> bool {
        self.gone_set.contains(id)
    }

    /// Starts the TTL of a job that just finished; its estimate is replaced by its result's real size.
    pub fn mark_finished(&mut self, id: &str, at: Instant) {
        if let Some(record) = self.jobs.get(id) {
            self.reserved = self.reserved.saturating_sub(record.estimated_bytes);
            self.bytes += record.result_bytes();
        }
        self.finished.push_back((at, id.to_owned()));
        self.sweep(at);
    }

    /// Whether a job with `estimated_bytes` of results fits next to the unread results and the unfinished jobs
    /// (`pending` of them, the new one not counted). Room that only read results take is made by evicting them.
    pub fn room_for(
        &mut self,
        pending: usize,
        estimated_bytes: usize,
        now: Instant,
    ) -> Result<(), NoRoom> {
        self.sweep(now);
        let unread: Vec<&(Instant, JobId)> = self
            .finished
            .iter()
            .filter(|(_, id)| self.jobs.get(id).is_some_and(|record| !record.read))
            .collect();
        let unread_bytes: usize = unread
            .iter()
            .filter_map(|(_, id)| self.jobs.get(id))
            .map(JobRecord::result_bytes)
            .sum();
        let held = unread_bytes + self.reserved;
        let over_count = unread.len() + pending + 1 > self.max_finished;
        // A job larger than the whole budget still runs when nothing else holds any of it.
        let over_bytes = held > 0 && held + estimated_bytes > self.max_bytes;
        if !over_count && !over_bytes {
            return Ok(());
        }
        let retry_after = unread.first().map(|(finished, _)| {
            self.ttl
                .saturating_sub(now.saturating_duration_since(*finished))
                .max(Duration::from_secs(1))
        });
        Err(NoRoom { retry_after })
    }

    /// Forgets expired finished jobs, then read ones (oldest first) while over the count cap or byte budget.
    pub fn sweep(&mut self, now: Instant) {
        while let Some((finished, _)) = self.finished.front() {
            if now.saturating_duration_since(*finished) < self.ttl {
                break;
            }
            self.remove_finished(0);
        }
        while self.finished.len() > self.max_finished || self.bytes > self.max_bytes {
            let oldest_read = self
                .finished
                .iter()
                .position(|(_, id)| self.jobs.get(id).is_none_or(|record| record.read));
            match oldest_read {
                Some(index) => self.remove_finished(index),
                // Only unread results are left: they stay until their TTL.
                None => break,
            }
        }
    }

    fn remove_finished(&mut self, index: usize) {
        let Some((_, id)) = self.finished.remove(index) else {
            return;
        };
        if let Some(record) = self.jobs.remove(&id) {
            self.bytes = self.bytes.saturating_sub(record.result_bytes());
        }
        if self.gone.len() >= REMEMBERED_GONE {
            if let Some(old) = self.gone.pop_front() {
                self.gone_set.remove(&old);
            }
        }
        self.gone_set.insert(id.clone());
        self.gone.push_back(id);
    }
}
