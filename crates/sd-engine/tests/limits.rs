//! The engine at its limits (issue 14): cancelling inside a long step, shutdown ending a job that cannot stop,
//! and the result budget that never evicts an unread result before its TTL.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use std::time::{Duration, Instant};

use sd_core::pipeline::GenerateRequest;
use sd_engine::fake::FakeBackend;
use sd_engine::{
    Backend, Engine, EngineConfig, JobEvent, JobRequest, JobStatus, Operation, SubmitError,
};

async fn engine_with(step_delay: Duration, config: EngineConfig) -> Engine {
    let loader = Box::new(move || Ok(Box::new(FakeBackend::new(step_delay)) as Box<dyn Backend>));
    let engine = Engine::start(loader, config).unwrap();
    engine.wait_loaded().await.unwrap();
    engine
}

fn request(prompt: &str, steps: usize, seeds: Vec<u64>) -> JobRequest {
    JobRequest {
        operation: Operation::ImageGeneration,
        generate: GenerateRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            steps,
            guidance_scale: 7.5,
            width: 64,
            height: 48,
            sampler: None,
            seeds,
            clip_skip: 1,
            init: None,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        },
    }
}

async fn wait_for_status(engine: &Engine, id: &str, status: JobStatus) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while engine.job(id).map(|job| job.status) != Some(status) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("job {id} never became {status:?}"));
}

#[tokio::test]
async fn cancel_stops_a_running_job_inside_a_long_step() {
    // One step takes 20 s; cancellation must not wait for it.
    let engine = engine_with(Duration::from_secs(20), EngineConfig::default()).await;
    let job = engine.submit(request("slow", 2, vec![1])).unwrap();
    wait_for_status(&engine, &job.id, JobStatus::Running).await;
    let asked = Instant::now();
    engine.cancel(&job.id).unwrap();
    wait_for_status(&engine, &job.id, JobStatus::Cancelled).await;
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn shutdown_gives_every_job_a_terminal_event_even_one_that_cannot_stop() {
    let config = EngineConfig {
        stop_wait: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let engine = engine_with(Duration::from_secs(3), config).await;
    let stuck = engine.submit(request("[stuck]", 5, vec![1])).unwrap();
    let waiting = engine.submit(request("next", 1, vec![1])).unwrap();
    wait_for_status(&engine, &stuck.id, JobStatus::Running).await;
    let mut live = engine.subscribe(&stuck.id).unwrap().live.unwrap();
    let started = Instant::now();
    engine.shutdown(Duration::from_millis(100)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let last = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match live.recv().await {
                Ok(event) if event.is_terminal() => return Some(event),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(&last, Some(JobEvent::Error { code, .. }) if code == "shutting_down"),
        "{last:?}"
    );
    assert_eq!(engine.job(&stuck.id).unwrap().status, JobStatus::Failed);
    assert_eq!(
        engine.job(&waiting.id).unwrap().status,
        JobStatus::Cancelled
    );
}

#[tokio::test]
async fn unread_results_are_kept_and_new_jobs_refused_until_one_is_read() {
    let config = EngineConfig {
        max_finished: 2,
        ..EngineConfig::default()
    };
    let engine = engine_with(Duration::ZERO, config).await;
    let first = engine.submit(request("a", 1, vec![1])).unwrap();
    let second = engine.submit(request("b", 1, vec![2])).unwrap();
    wait_for_status(&engine, &second.id, JobStatus::Succeeded).await;
    match engine.submit(request("c", 1, vec![3])) {
        Err(SubmitError::ResultsFull { retry_after }) => {
            assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}")
        }
        other => panic!("expected results_full, got {other:?}"),
    }
    assert!(
        engine.job(&first.id).is_some(),
        "an unread result was evicted"
    );
    engine.image(&first.id, 0).unwrap();
    let third = engine.submit(request("c", 1, vec![3])).unwrap();
    wait_for_status(&engine, &third.id, JobStatus::Succeeded).await;
    // The read one made room; the unread one is still there.
    assert!(engine.job(&first.id).is_none());
    assert!(engine.expired(&first.id));
    assert!(engine.job(&second.id).is_some());
    assert!(engine
        .metrics()
        .contains("sd_worker_jobs_rejected_total{reason=\"results_full\"} 1"));
}

#[tokio::test]
async fn results_are_budgeted_in_bytes() {
    // 64x48 RGB is 9,216 bytes raw; with its base64 copy a result is estimated at about 21 kB.
    let config = EngineConfig {
        max_result_bytes: 50_000,
        ..EngineConfig::default()
    };
    let engine = engine_with(Duration::ZERO, config).await;
    let first = engine.submit(request("a", 1, vec![1])).unwrap();
    let second = engine.submit(request("b", 1, vec![2])).unwrap();
    wait_for_status(&engine, &second.id, JobStatus::Succeeded).await;
    assert!(matches!(
        engine.submit(request("c", 1, vec![3])),
        Err(SubmitError::ResultsFull { .. })
    ));
    // A late subscriber has the result too: reading it makes room.
    assert!(engine.subscribe(&first.id).unwrap().snapshot[0].is_terminal());
    let third = engine.submit(request("c", 1, vec![3])).unwrap();
    wait_for_status(&engine, &third.id, JobStatus::Succeeded).await;
    assert!(engine.expired(&first.id));
    assert!(engine.job(&second.id).is_some());
}
