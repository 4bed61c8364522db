//! The native job API end to end in process: submit and stream, subscribers, cancel, queue bounds,
//! concurrent jobs that each match their seed alone, status, list, images and TTL.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use common::{app, app_with, decode_b64_png, fake_png_pixels, generation};
use sd_engine::EngineConfig;
use sd_server::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn submit_then_stream_to_done() {
    let app = app(Duration::from_millis(50)).await;
    let reply = app.post_json("/v1/jobs", &json!({"operation": "image_generation", "prompt": "a fox",
        "width": 64, "height": 64, "steps": 4, "seed": 42, "num_images": 2, "hive_id": "h1", "model": "m",
        "worker_id": "w"})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    let accepted = reply.json();
    let id = accepted["job_id"].as_str().unwrap();
    assert_eq!(accepted["sse_url"], format!("/v1/jobs/{id}/stream"));
    assert_eq!(accepted["seeds"], json!([42, 43]));
    assert_eq!(reply.headers[header::LOCATION], format!("/v1/jobs/{id}"));

    let events = app.stream(id).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let names: Vec<&str> = events
        .iter()
        .filter_map(|event| event.event.as_deref())
        .collect();
    assert!(
        names.starts_with(&["queued", "started"]) || names.starts_with(&["started"]),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|name| **name == "progress").count(),
        4,
        "{names:?}"
    );
    assert!(names.contains(&"preview"));
    let complete = events
        .iter()
        .find(|event| event.event.as_deref() == Some("complete"))
        .unwrap()
        .json();
    assert_eq!(complete["type"], "complete");
    assert_eq!(complete["seeds"], json!([42, 43]));
    assert_eq!(
        decode_b64_png(complete["images"][1].as_str().unwrap()),
        fake_png_pixels(43, "a fox")
    );
    let progress = events
        .iter()
        .find(|event| event.event.as_deref() == Some("progress"))
        .unwrap()
        .json();
    assert_eq!(
        (progress["step"].as_u64(), progress["total"].as_u64()),
        (Some(1), Some(4))
    );
    assert!(progress["percent"].as_f64().unwrap() > 0.0 && progress["eta_ms"].is_u64());

    let job = app.get(&format!("/v1/jobs/{id}")).await.json();
    assert_eq!(job["status"], "succeeded");
    assert_eq!(
        job["result"]["images"],
        json!([
            format!("/v1/jobs/{id}/images/0"),
            format!("/v1/jobs/{id}/images/1")
        ])
    );
    assert_eq!(job["result"]["vae_tiled"], false);
    assert_eq!(job["result"]["model"], "fake");
    assert_eq!(job["result"]["model_hash"], "fa4e0000f4");
    assert!(job["timings"]["generate_ms"].as_f64().unwrap() > 0.0);
    let png = app.get(&format!("/v1/jobs/{id}/images/0")).await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(
        image::load_from_memory(&png.body).unwrap().to_rgb8(),
        fake_png_pixels(42, "a fox")
    );
    let missing = app.get(&format!("/v1/jobs/{id}/images/2")).await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn two_subscribers_see_the_same_job() {
    let app = app(Duration::from_millis(20)).await;
    let id = app.submit(generation("shared")).await;
    let (first, second) = tokio::join!(app.stream(&id), app.stream(&id));
    for events in [&first, &second] {
        assert_eq!(events.last().unwrap().data, "[DONE]");
        assert!(events
            .iter()
            .any(|event| event.event.as_deref() == Some("complete")));
    }
    let complete = |events: &[common::SseEvent]| {
        events
            .iter()
            .find(|event| event.event.as_deref() == Some("complete"))
            .unwrap()
            .json()["images"]
            .clone()
    };
    assert_eq!(complete(&first), complete(&second));
}

#[tokio::test]
async fn a_late_subscriber_gets_the_result_of_a_finished_job() {
    let app = app(Duration::ZERO).await;
    let id = app.submit(generation("late")).await;
    app.wait_status(&id, "succeeded").await;
    let events = app.stream(&id).await;
    let names: Vec<Option<&str>> = events.iter().map(|event| event.event.as_deref()).collect();
    assert_eq!(names, [Some("complete"), None]);
    assert_eq!(events[1].data, "[DONE]");
    let unknown = app.get("/v1/jobs/nope/stream").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (StatusCode::NOT_FOUND, "job_not_found")
    );
}

#[tokio::test]
async fn cancel_queued_and_running_and_the_next_job_starts_promptly() {
    let app = app(Duration::from_millis(20)).await;
    let running = app
        .submit(
            json!({"operation": "image_generation", "prompt": "long", "steps": 150,
        "width": 64, "height": 64}),
        )
        .await;
    let queued = app.submit(generation("queued")).await;
    let next = app.submit(generation("next")).await;
    app.wait_status(&running, "running").await;

    let reply = app.delete(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"job_id": queued, "status": "cancelled"})
    );
    let events = app.stream(&queued).await;
    assert_eq!(events[0].event.as_deref(), Some("cancelled"));

    let asked = Instant::now();
    let reply = app.delete(&format!("/v1/jobs/{running}")).await;
    assert_eq!(
        (reply.status, reply.json()["status"].as_str()),
        (StatusCode::ACCEPTED, Some("cancelling"))
    );
    app.wait_status(&running, "cancelled").await;
    app.wait_status(&next, "running").await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "next job started {:?} after cancel",
        asked.elapsed()
    );

    let again = app.delete(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (StatusCode::CONFLICT, "job_finished")
    );
    let unknown = app.delete("/v1/jobs/does-not-exist").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (StatusCode::NOT_FOUND, "job_not_found")
    );
    let image = app.get(&format!("/v1/jobs/{running}/images/0")).await;
    assert_eq!(
        (image.status, image.code().as_str()),
        (StatusCode::CONFLICT, "job_not_succeeded")
    );
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let config = EngineConfig {
        max_queue: 2,
        ..EngineConfig::default()
    };
    let app = app_with(Duration::from_millis(50), config, ServerConfig::default()).await;
    let running = app
        .submit(
            json!({"operation": "image_generation", "prompt": "x", "steps": 100,
        "width": 64, "height": 64}),
        )
        .await;
    app.wait_status(&running, "running").await;
    app.submit(generation("a")).await;
    app.submit(generation("b")).await;
    let refused = app.post_json("/v1/jobs", &generation("c")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "queue_full");
    let retry_after: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
}

#[tokio::test]
async fn ten_concurrent_jobs_each_give_what_their_seed_gives_alone() {
    let app = app(Duration::from_millis(1)).await;
    let submissions = (0..10u64).map(|seed| {
        let body = json!({"operation": "image_generation", "prompt": "same prompt", "seed": 1000 + seed,
            "width": 64, "height": 64, "steps": 2});
        let app = &app;
        async move { (seed, app.submit(body).await) }
    });
    let ids = futures_util::future::join_all(submissions).await;
    let streams = ids.iter().map(|(seed, id)| {
        let app = &app;
        async move { (*seed, app.stream(id).await) }
    });
    for (seed, events) in futures_util::future::join_all(streams).await {
        let complete = events
            .iter()
            .find(|event| event.event.as_deref() == Some("complete"))
            .unwrap()
            .json();
        assert_eq!(complete["seeds"], json!([1000 + seed]));
        let image = decode_b64_png(complete["images"][0].as_str().unwrap());
        assert_eq!(
            image,
            fake_png_pixels(1000 + seed, "same prompt"),
            "seed {seed}"
        );
    }
    // And alone, afterwards: the same bytes.
    let alone = app
        .submit(
            json!({"operation": "image_generation", "prompt": "same prompt", "seed": 1003,
        "width": 64, "height": 64, "steps": 2}),
        )
        .await;
    app.wait_status(&alone, "succeeded").await;
    let png = app.get(&format!("/v1/jobs/{alone}/images/0")).await;
    assert_eq!(
        image::load_from_memory(&png.body).unwrap().to_rgb8(),
        fake_png_pixels(1003, "same prompt")
    );
}

#[tokio::test]
async fn status_list_and_defaults_from_the_model() {
    let app = app(Duration::from_millis(30)).await;
    let running = app
        .submit(
            json!({"operation": "image_generation", "prompt": "defaults", "width": 64,
        "height": 64}),
        )
        .await;
    let waiting = app.submit(generation("waiting")).await;
    let job = app.wait_status(&running, "running").await;
    assert_eq!(job["operation"], "image_generation");
    assert!(job["seeds"][0].is_u64(), "a random seed is reported: {job}");
    assert_eq!(
        (job["width"].as_u64(), job["height"].as_u64()),
        (Some(64), Some(64)),
        "output size: {job}"
    );
    let waiting_job = app.get(&format!("/v1/jobs/{waiting}")).await.json();
    assert_eq!(
        (
            waiting_job["status"].as_str(),
            waiting_job["position"].as_u64()
        ),
        (Some("queued"), Some(1))
    );
    let job = app.wait_status(&running, "running").await;
    let _ = job;
    // The fake model's default is 20 steps.
    let events = app.stream(&running).await;
    let total = events
        .iter()
        .find(|event| event.event.as_deref() == Some("progress"))
        .unwrap()
        .json()["total"]
        .clone();
    assert_eq!(total, 20);

    let list = app.get("/v1/jobs?limit=1").await.json();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list["jobs"][0]["id"], waiting);
    let all = app.get("/v1/jobs").await.json();
    assert_eq!(all["jobs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn finished_jobs_are_forgotten_after_the_ttl() {
    let config = EngineConfig {
        result_ttl: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let app = app_with(Duration::ZERO, config, ServerConfig::default()).await;
    let id = app.submit(generation("ephemeral")).await;
    app.wait_status(&id, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired is told apart from never-existed: 410 job_expired.
    let gone = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        (gone.status, gone.code().as_str()),
        (StatusCode::GONE, "job_expired")
    );
    for path in [
        format!("/v1/jobs/{id}/images/0"),
        format!("/v1/jobs/{id}/stream"),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (StatusCode::GONE, "job_expired"),
            "{path}"
        );
    }
    let unknown = app.get("/v1/jobs/never-was").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (StatusCode::NOT_FOUND, "job_not_found")
    );
}

#[tokio::test]
async fn a_failing_job_fails_alone_and_the_worker_keeps_serving() {
    let app = app(Duration::ZERO).await;
    let failing = app.submit(generation("boom [fail]")).await;
    let events = app.stream(&failing).await;
    let error = events
        .iter()
        .find(|event| event.event.as_deref() == Some("error"))
        .unwrap()
        .json();
    assert_eq!(error["code"], "invalid_input");
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let job = app.get(&format!("/v1/jobs/{failing}")).await.json();
    assert_eq!(
        (job["status"].as_str(), job["error"]["code"].as_str()),
        (Some("failed"), Some("invalid_input"))
    );
    let fine = app.submit(generation("fine")).await;
    app.wait_status(&fine, "succeeded").await;
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_lose_its_job() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = app(Duration::from_millis(20)).await;
    let id = app.submit(generation("walk away")).await;
    let request = axum::http::Request::get(format!("/v1/jobs/{id}/stream"))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    let job = app.wait_status(&id, "succeeded").await;
    assert_eq!(job["result"]["images"].as_array().unwrap().len(), 1);
    let events = app.stream(&id).await;
    assert_eq!(events[0].event.as_deref(), Some("complete"));
}
