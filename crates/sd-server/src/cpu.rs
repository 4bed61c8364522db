//! The bounded pool for the CPU work requests bring (decoding and resizing input images, mask blur, pasting
//! back, format conversion). Such work runs on tokio's blocking threads, which are many (512) and made on
//! demand: without a bound, a burst of image requests takes every core and much memory at once, and the
//! model thread and `/health` starve. [`CpuPool::run`] holds one of `--cpu-tasks` permits for each task;
//! requests beyond it wait their turn (asynchronously, holding no thread).

use std::sync::Arc;

use tokio::sync::Semaphore;

/// A blocking task could not run to its end (it panicked, or the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CpuTaskFailed(String);

#[derive(Debug)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
    size: usize,
}

impl CpuPool {
    /// `size` tasks at once; 0 means one per CPU core.
    pub fn new(size: usize) -> Self {
        let size = if size == 0 {
            std::thread::available_parallelism().map_or(4, usize::from)
        } else {
            size
        };
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `work` on a blocking thread once a permit is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CpuTaskFailed> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|error| CpuTaskFailed(error.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|error| CpuTaskFailed(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn no_more_tasks_run_at_once_than_the_pool_allows() {
        let pool = Arc::new(CpuPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, most) =
                    (Arc::clone(&pool), Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await, Ok(Ok(()))));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert!(CpuPool::new(0).size() >= 1);
    }
}
