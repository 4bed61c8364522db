//! SIGTERM: the running job finishes, queued ones are cancelled, the process exits 0.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

#[tokio::test]
async fn sigterm_finishes_the_running_job_cancels_the_queue_and_exits_zero() {
    common::scenario_sigterm(&common::tiny_model()).await;
}
