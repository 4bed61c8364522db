//! Talking to Redis: a small pool of synchronous connections with short timeouts (so a Redis outage turns
//! into an error within a second or two rather than a hung request), the key names, and the error type.
//!
//! Synchronous on purpose: [`sd_engine::JobService`] is a synchronous trait (its in-process implementation
//! only takes a short lock), and one Redis round trip is well under a millisecond on a healthy network.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The consumer group every worker of a model joins.
pub const GROUP: &str = "workers";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis cannot be reached (refused, timed out, connection lost).
    #[error("Redis is unreachable: {0}")]
    Unreachable(String),
    /// Redis answered with an error.
    #[error("Redis error: {0}")]
    Redis(String),
    #[error("the Redis URL is not valid: {0}")]
    Url(String),
}

impl From<redis::RedisError> for QueueError {
    fn from(error: redis::RedisError) -> Self {
        if is_connection_error(&error) {
            Self::Unreachable(error.to_string())
        } else {
            Self::Redis(error.to_string())
        }
    }
}

fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}

/// A Redis URL without its password, for logs and error messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A pool of connections to one Redis; cheap to share behind an `Arc`.
pub struct Redis {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    timeout: Duration,
}

impl Redis {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` or `rediss://...` (TLS). Connects lazily.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, QueueError> {
        let client =
            redis::Client::open(url).map_err(|error| QueueError::Url(error.to_string()))?;
        Ok(Self {
            client,
            idle: Mutex::new(Vec::new()),
            timeout,
        })
    }

    /// A fresh connection whose reads may wait `read_timeout` (longer than any `BLOCK` it will send).
    pub fn connect(&self, read_timeout: Duration) -> Result<redis::Connection, QueueError> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(read_timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Runs `work` on a pooled connection; a connection that failed is dropped, not reused.
    pub fn run<T>(
        &self,
        work: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, QueueError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => self.connect(self.timeout)?,
        };
        match work(&mut connection) {
            Ok(value) => {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < 16 {
                    idle.push(connection);
                }
                Ok(value)
            }
            Err(error) => {
                if !is_connection_error(&error) {
                    let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                    idle.push(connection);
                }
                Err(error.into())
            }
        }
    }
}

/// Key names. Every key of a job starts with `sd:job:{id}` so that one `PEXPIRE` per key ends it.
pub mod keys {
    /// The model's job stream (one entry per job, `job` = id), read by the group [`super::GROUP`].
    pub fn stream(model: &str) -> String {
        format!("sd:jobs:{model}")
    }
    /// The job's hash: status, request, timestamps, attempts, outcome, images (`image:N`).
    pub fn job(id: &str) -> String {
        format!("sd:job:{id}")
    }
    /// The job's events, one stream entry each (`e` = JobEvent JSON), replayed to every SSE subscriber.
    pub fn events(id: &str) -> String {
        format!("sd:job:{id}:events")
    }
    /// Set while a running job should stop.
    pub fn cancel(id: &str) -> String {
        format!("sd:job:{id}:cancel")
    }
    /// Every job id scored by creation time (ms), for listings; ids whose hash expired are pruned on read.
    pub const INDEX: &str = "sd:jobs:index";
    /// model name -> ModelInfo JSON of the last worker that registered it (kept: validation needs it even
    /// while no worker for the model is up).
    pub const MODELS: &str = "sd:models";
    /// Ids of workers that registered; each has a [`worker`] key that expires without heartbeats.
    pub const WORKERS: &str = "sd:workers";
    pub fn worker(id: &str) -> String {
        format!("sd:worker:{id}")
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redacted("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redacted("rediss://u:p@db"), "rediss://***@db");
        assert_eq!(redacted("redis://db:6379"), "redis://db:6379");
    }
}
