//! The engine without sockets, against the fake backend: queue order and positions, events and late
//! subscribers, cancellation, failures that stay contained, bounds, TTL and shutdown.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use std::time::Duration;

use sd_core::pipeline::GenerateRequest;
use sd_engine::fake::FakeBackend;
use sd_engine::{
    Backend, CancelError, CancelOutcome, Engine, EngineConfig, JobEvent, JobRequest, JobStatus,
    Operation, Readiness, SubmitError,
};

fn config() -> EngineConfig {
    EngineConfig {
        preview_interval: Some(Duration::ZERO),
        ..EngineConfig::default()
    }
}

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

/// Every event of a job until its terminal one (snapshot first).
async fn events(engine: &Engine, id: &str) -> Vec<JobEvent> {
    let subscription = engine.subscribe(id).unwrap();
    let mut events = subscription.snapshot;
    if events.last().is_some_and(JobEvent::is_terminal) {
        return events;
    }
    let mut live = subscription.live.unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match live.recv().await {
                Ok(event) => {
                    let done = event.is_terminal();
                    events.push(event);
                    if done {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
    .await
    .unwrap();
    events
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

fn png_of(seed: u64, prompt: &str) -> image::RgbImage {
    FakeBackend::image_for(seed, prompt, 64, 48)
}

#[tokio::test]
async fn a_job_streams_progress_and_completes_with_its_images() {
    let engine = engine_with(Duration::from_millis(1), config()).await;
    let submitted = engine.submit(request("a cat", 4, vec![7, 8])).unwrap();
    assert_eq!(submitted.position, 1);
    let events = events(&engine, &submitted.id).await;
    let names: Vec<&str> = events.iter().map(JobEvent::name).collect();
    assert!(names.contains(&"started"), "{names:?}");
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|event| {
            if let JobEvent::Progress { step, .. } = event {
                Some(*step)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    assert!(names.contains(&"preview"));
    let JobEvent::Complete {
        images,
        seeds,
        timings,
    } = events.last().unwrap()
    else {
        panic!("{names:?}")
    };
    assert_eq!(seeds, &[7, 8]);
    assert_eq!(images.len(), 2);
    assert!(timings.generate_ms > 0.0 && timings.total_ms >= timings.generate_ms);

    let job = engine.job(&submitted.id).unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.image_count, 2);
    for (index, seed) in [7u64, 8].into_iter().enumerate() {
        let png = engine.image(&submitted.id, index).unwrap();
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(decoded, png_of(seed, "a cat"));
    }
    assert!(engine.image(&submitted.id, 2).is_err());
}

#[tokio::test]
async fn jobs_run_in_order_and_waiting_jobs_learn_their_new_position() {
    let engine = engine_with(Duration::from_millis(20), config()).await;
    let first = engine.submit(request("one", 5, vec![1])).unwrap();
    wait_for_status(&engine, &first.id, JobStatus::Running).await;
    let second = engine.submit(request("two", 1, vec![2])).unwrap();
    let third = engine.submit(request("three", 1, vec![3])).unwrap();
    assert_eq!((second.position, third.position), (1, 2));
    assert_eq!(engine.job(&third.id).unwrap().position, Some(2));
    let third_events = events(&engine, &third.id).await;
    let positions: Vec<usize> = third_events
        .iter()
        .filter_map(|event| {
            if let JobEvent::Queued { position } = event {
                Some(*position)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(positions, [2, 1]);
    let started = |id: &str| engine.job(id).unwrap().started_at.unwrap();
    assert!(started(&first.id) < started(&second.id) && started(&second.id) < started(&third.id));
}

#[tokio::test]
async fn cancelling_a_waiting_job_is_immediate_and_a_running_one_stops_between_steps() {
    let engine = engine_with(Duration::from_millis(20), config()).await;
    let running = engine.submit(request("long", 1000, vec![1])).unwrap();
    let waiting = engine.submit(request("waiting", 1, vec![2])).unwrap();
    let next = engine.submit(request("next", 2, vec![3])).unwrap();
    wait_for_status(&engine, &running.id, JobStatus::Running).await;

    assert_eq!(engine.cancel(&waiting.id), Ok(CancelOutcome::Cancelled));
    assert_eq!(
        engine.job(&waiting.id).unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(engine.job(&next.id).unwrap().position, Some(1));
    assert_eq!(
        engine.cancel(&waiting.id),
        Err(CancelError::AlreadyFinished(JobStatus::Cancelled))
    );

    let asked = std::time::Instant::now();
    assert_eq!(engine.cancel(&running.id), Ok(CancelOutcome::Cancelling));
    assert!(matches!(
        events(&engine, &running.id).await.last(),
        Some(JobEvent::Cancelled {})
    ));
    wait_for_status(&engine, &next.id, JobStatus::Running).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "next job started after {:?}",
        asked.elapsed()
    );
    wait_for_status(&engine, &next.id, JobStatus::Succeeded).await;
    assert_eq!(engine.cancel("nope"), Err(CancelError::NotFound));
}

#[tokio::test]
async fn a_full_queue_refuses_with_a_retry_hint() {
    let engine = engine_with(
        Duration::from_millis(50),
        EngineConfig {
            max_queue: 2,
            ..config()
        },
    )
    .await;
    let running = engine.submit(request("run", 100, vec![1])).unwrap();
    wait_for_status(&engine, &running.id, JobStatus::Running).await;
    engine.submit(request("a", 1, vec![1])).unwrap();
    engine.submit(request("b", 1, vec![1])).unwrap();
    let refused = engine.submit(request("c", 1, vec![1]));
    assert!(
        matches!(refused, Err(SubmitError::QueueFull { retry_after }) if retry_after >= Duration::from_secs(1))
    );
    assert!(engine
        .metrics()
        .contains("sd_worker_jobs_rejected_total{reason=\"queue_full\"} 1"));
}

#[tokio::test]
async fn retry_after_is_the_expected_wait_for_the_jobs_ahead() {
    let engine = engine_with(
        Duration::from_millis(50),
        EngineConfig {
            max_queue: 3,
            ..config()
        },
    )
    .await;
    // One job of about a second teaches the engine the mean job time.
    let first = engine.submit(request("warm", 20, vec![1])).unwrap();
    wait_for_status(&engine, &first.id, JobStatus::Succeeded).await;
    let running = engine.submit(request("run", 100, vec![1])).unwrap();
    wait_for_status(&engine, &running.id, JobStatus::Running).await;
    for name in ["a", "b", "c"] {
        engine.submit(request(name, 20, vec![1])).unwrap();
    }
    // Four jobs ahead (three waiting, one running) at about a second each.
    match engine.submit(request("d", 1, vec![1])) {
        Err(SubmitError::QueueFull { retry_after }) => assert!(
            (Duration::from_secs(4)..=Duration::from_secs(6)).contains(&retry_after),
            "{retry_after:?}"
        ),
        other => panic!("expected queue_full, got {other:?}"),
    }
    engine.cancel(&running.id).unwrap();
}

#[tokio::test]
async fn late_subscribers_get_the_current_state() {
    let engine = engine_with(Duration::from_millis(1), config()).await;
    let done = engine.submit(request("done", 2, vec![5])).unwrap();
    wait_for_status(&engine, &done.id, JobStatus::Succeeded).await;
    let late = engine.subscribe(&done.id).unwrap();
    assert!(late.live.is_none());
    assert!(
        matches!(&late.snapshot[..], [JobEvent::Complete { seeds, images, .. }] if seeds == &[5] && images.len() == 1)
    );
    assert!(engine.subscribe("unknown").is_none());
    // Every late subscriber shares the one base64 copy made when the job finished.
    let again = engine.subscribe(&done.id).unwrap();
    match (&late.snapshot[..], &again.snapshot[..]) {
        ([JobEvent::Complete { images: a, .. }], [JobEvent::Complete { images: b, .. }]) => {
            assert!(
                std::sync::Arc::ptr_eq(&a[0], &b[0]),
                "re-encoded per subscriber"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn failures_and_panics_fail_only_their_job() {
    let engine = engine_with(Duration::from_millis(1), config()).await;
    let failing = engine.submit(request("please [fail]", 2, vec![1])).unwrap();
    let panicking = engine
        .submit(request("please [panic]", 2, vec![1]))
        .unwrap();
    let fine = engine.submit(request("fine", 2, vec![1])).unwrap();
    let failed = events(&engine, &failing.id).await;
    assert!(
        matches!(failed.last(), Some(JobEvent::Error { code, .. }) if code == "invalid_input"),
        "{failed:?}"
    );
    let panicked = events(&engine, &panicking.id).await;
    assert!(
        matches!(panicked.last(), Some(JobEvent::Error { code, .. }) if code == "internal_error"),
        "{panicked:?}"
    );
    wait_for_status(&engine, &fine.id, JobStatus::Succeeded).await;
    assert_eq!(
        engine.job(&failing.id).unwrap().error.unwrap().code,
        "invalid_input"
    );
    let metrics = engine.metrics();
    assert!(
        metrics.contains("sd_worker_jobs_finished_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sd_worker_jobs_finished_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn finished_jobs_expire_and_are_capped() {
    let short = EngineConfig {
        result_ttl: Duration::from_millis(200),
        ..config()
    };
    let engine = engine_with(Duration::ZERO, short).await;
    let job = engine.submit(request("x", 1, vec![1])).unwrap();
    wait_for_status(&engine, &job.id, JobStatus::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(engine.job(&job.id).is_none());
    assert!(engine.subscribe(&job.id).is_none());

    let capped = engine_with(
        Duration::ZERO,
        EngineConfig {
            max_finished: 3,
            ..config()
        },
    )
    .await;
    let mut ids = Vec::new();
    for index in 0..10 {
        let job = capped.submit(request("x", 1, vec![index])).unwrap();
        wait_for_status(&capped, &job.id, JobStatus::Succeeded).await;
        // Read: only read results may be evicted by the cap.
        capped.image(&job.id, 0).unwrap();
        ids.push(job.id);
    }
    assert_eq!(capped.jobs(100).len(), 3);
    assert!(capped.job(&ids[6]).is_none());
    assert!(
        capped.expired(&ids[6]),
        "an evicted job is known as expired"
    );
    assert!(
        engine.expired(&job.id),
        "an expired job is known as expired"
    );
    assert!(!capped.expired("never-existed"));
    assert!(capped.job(&ids[9]).is_some());
}

#[tokio::test]
async fn a_model_that_fails_to_load_says_why_and_takes_no_jobs() {
    let loader = Box::new(|| Err::<Box<dyn Backend>, _>("no weights in /nowhere".to_owned()));
    let engine = Engine::start(loader, config()).unwrap();
    assert_eq!(
        engine.wait_loaded().await.unwrap_err(),
        "no weights in /nowhere"
    );
    assert!(matches!(engine.readiness(), Readiness::Failed(reason) if reason.contains("/nowhere")));
    assert_eq!(
        engine.submit(request("x", 1, vec![1])).unwrap_err(),
        SubmitError::NotReady
    );
}

#[tokio::test]
async fn shutdown_lets_the_running_job_finish_and_cancels_the_rest() {
    let engine = engine_with(Duration::from_millis(10), config()).await;
    let running = engine.submit(request("run", 20, vec![1])).unwrap();
    let waiting = engine.submit(request("wait", 20, vec![1])).unwrap();
    wait_for_status(&engine, &running.id, JobStatus::Running).await;
    engine.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        engine.job(&running.id).unwrap().status,
        JobStatus::Succeeded
    );
    assert_eq!(
        engine.job(&waiting.id).unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(
        engine.submit(request("late", 1, vec![1])).unwrap_err(),
        SubmitError::ShuttingDown
    );
}

#[tokio::test]
async fn shutdown_cancels_a_job_that_outlives_the_grace_period() {
    let engine = engine_with(Duration::from_millis(10), config()).await;
    let running = engine.submit(request("endless", 100_000, vec![1])).unwrap();
    wait_for_status(&engine, &running.id, JobStatus::Running).await;
    engine.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        engine.job(&running.id).unwrap().status,
        JobStatus::Cancelled
    );
}

#[tokio::test]
async fn metrics_name_queue_outcomes_and_timings() {
    let engine = engine_with(Duration::ZERO, config()).await;
    let job = engine.submit(request("x", 3, vec![1])).unwrap();
    wait_for_status(&engine, &job.id, JobStatus::Succeeded).await;
    let text = engine.metrics();
    for name in [
        "sd_worker_queue_depth 0",
        "sd_worker_jobs_submitted_total 1",
        "sd_worker_step_seconds_count 3",
        "sd_worker_generation_seconds_count 1",
        "sd_worker_model_load_seconds",
        "sd_worker_model_loaded 1",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

#[tokio::test]
async fn previews_are_rate_limited() {
    let hourly = EngineConfig {
        preview_interval: Some(Duration::from_secs(3600)),
        ..config()
    };
    // Steps take a little time so the subscription below is in place before the job's first step, even on
    // a loaded machine (a late subscriber only gets the final state).
    let engine = engine_with(Duration::from_millis(50), hourly).await;
    let job = engine.submit(request("x", 10, vec![1])).unwrap();
    let seen = events(&engine, &job.id).await;
    let previews = seen
        .iter()
        .filter(|event| event.name() == "preview")
        .count();
    let progress = seen
        .iter()
        .filter(|event| event.name() == "progress")
        .count();
    assert_eq!((previews, progress), (1, 10));

    let none = engine_with(
        Duration::ZERO,
        EngineConfig {
            preview_interval: None,
            ..config()
        },
    )
    .await;
    let job = none.submit(request("x", 3, vec![1])).unwrap();
    assert!(!events(&none, &job.id)
        .await
        .iter()
        .any(|event| event.name() == "preview"));
}
