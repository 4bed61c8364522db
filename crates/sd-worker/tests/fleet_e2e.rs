//! The fleet end to end: real redis-server, real gateways and workers on the tiny models. Each guarantee
//! the README states for a fleet has a test here.

mod fleet;

use std::time::Duration;

use fleet::*;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_and_three_workers_one_killed_run_every_job_once_as_the_cli_would() {
    let redis = RedisServer::start(false);
    let gateway = Proc::gateway(&redis, "gateway-a");
    let other = Proc::gateway(&redis, "gateway-b");
    let mut victim = Proc::worker(&redis, "w0", "tiny-sd1", &[]);
    let workers = [
        Proc::worker(&redis, "w1", "tiny-sd1", &[]),
        Proc::worker(&redis, "w2", "tiny-sd1", &[]),
    ];
    wait_workers(&gateway, "tiny-sd1", 3).await;
    wait_ready(&other).await;
    let mut ids = Vec::new();
    for seed in 0..100u64 {
        ids.push(submit(&gateway, &body("a red fox", seed, 3, 64)).await);
    }
    // One worker is SIGKILLed mid-batch; whatever it was running is taken over.
    let started = std::time::Instant::now();
    while !victim.log().contains("job started") {
        assert!(
            started.elapsed() < LONG,
            "w0 took no job:\n{}",
            victim.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    victim.kill();
    // Gateways hold no job state: a restarted one answers for jobs submitted before.
    drop(gateway);
    let gateway = Proc::gateway(&redis, "gateway-a-restarted");
    wait_ready(&gateway).await;
    for id in &ids {
        let job = wait_status(&gateway, id, &["succeeded", "failed"], LONG).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    // Exactly once: one outcome per job in its events, whichever worker ran it.
    for id in &ids {
        let events = stream(&other, id).await;
        let outcomes = events
            .iter()
            .filter(|(name, _)| name == "complete" || name == "error")
            .count();
        assert_eq!(outcomes, 1, "job {id}: {events:?}");
    }
    assert!(
        workers.iter().all(|w| w.log().contains("job started")),
        "both workers took jobs"
    );
    // Full history through the other gateway, late: queued .. complete, then [DONE].
    let events = stream(&other, &ids[0]).await;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"queued"), "{names:?}");
    assert!(
        names.contains(&"started") && names.contains(&"progress"),
        "{names:?}"
    );
    assert_eq!(names[names.len() - 2], "complete");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    // The same pixels as the single-process CLI for the same seed.
    for (seed, id) in [(0u64, &ids[0]), (7, &ids[7])] {
        assert_eq!(
            image_pixels(&gateway, id).await,
            generate_pixels("a red fox", seed, 3, 64),
            "seed {seed}"
        );
    }
    let listed: serde_json::Value = reqwest::get(other.url("/v1/jobs?limit=100"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_job_finishes_on_another_and_a_poison_job_fails() {
    let redis = RedisServer::start(false);
    let gateway = Proc::gateway(&redis, "gateway");
    let mut first = Proc::worker(&redis, "victim", "tiny-sd1", &["--max-attempts", "2"]);
    wait_workers(&gateway, "tiny-sd1", 1).await;
    let slow = body("a slow job", 3, 150, 128);
    let id = submit(&gateway, &slow).await;
    wait_status(&gateway, &id, &["running"], LONG).await;
    first.kill(); // SIGKILL mid-job
    let _second = Proc::worker(&redis, "rescuer", "tiny-sd1", &["--max-attempts", "2"]);
    let job = wait_status(&gateway, &id, &["succeeded", "failed"], LONG).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let starts = stream(&gateway, &id)
        .await
        .iter()
        .filter(|(name, _)| name == "started")
        .count();
    assert_eq!(starts, 2, "run again from the start once");

    // A job whose workers keep dying fails after --max-attempts (2) with a clear error.
    drop(_second);
    let mut killer = Proc::worker(&redis, "k1", "tiny-sd1", &["--max-attempts", "2"]);
    let poison = submit(&gateway, &slow).await;
    wait_status(&gateway, &poison, &["running"], LONG).await;
    killer.kill();
    let mut killer = Proc::worker(&redis, "k2", "tiny-sd1", &["--max-attempts", "2"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    while !(killer.log().contains("job started") && killer.log().contains(poison.as_str())) {
        assert!(
            started.elapsed() < LONG,
            "k2 never took the job:\n{}",
            killer.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    killer.kill();
    let _last = Proc::worker(&redis, "k3", "tiny-sd1", &["--max-attempts", "2"]);
    let job = wait_status(&gateway, &poison, &["succeeded", "failed"], LONG).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "job_poisoned", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_works_across_processes() {
    let redis = RedisServer::start(false);
    let gateway = Proc::gateway(&redis, "gateway");
    let other = Proc::gateway(&redis, "gateway-b");
    let _worker = Proc::worker(&redis, "w", "tiny-sd1", &[]);
    wait_workers(&gateway, "tiny-sd1", 1).await;
    let running = submit(&gateway, &body("long", 1, 150, 128)).await;
    let waiting = submit(&gateway, &body("long", 2, 150, 128)).await;
    wait_status(&gateway, &running, &["running"], LONG).await;
    let client = reqwest::Client::new();
    let reply = client
        .delete(other.url(&format!("/v1/jobs/{waiting}")))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "a queued job is cancelled at once");
    let reply = client
        .delete(other.url(&format!("/v1/jobs/{running}")))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202, "a running job stops after its step");
    let stopped = wait_status(
        &gateway,
        &running,
        &["cancelled", "succeeded", "failed"],
        LONG,
    )
    .await;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    assert_eq!(job(&gateway, &waiting).await["status"], "cancelled");
    let events = stream(&gateway, &running).await;
    assert_eq!(events[events.len() - 2].0, "cancelled");
    let reply = client
        .delete(gateway.url(&format!("/v1/jobs/{running}")))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_models_are_served_by_their_own_workers() {
    let redis = RedisServer::start(false);
    let gateway = Proc::gateway(&redis, "gateway");
    let sd1 = Proc::worker(&redis, "sd1", "tiny-sd1", &[]);
    // --models-dir resolves a bare model name.
    let models = std::path::Path::new(&fixture("tiny-sd2"))
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let sd2 = Proc::work(
        &redis,
        "sd2",
        &[
            "--models-dir",
            &models,
            "--model",
            "tiny-sd2",
            "--worker-id",
            "sd2",
        ],
    );
    wait_workers(&gateway, "tiny-sd1", 1).await;
    wait_workers(&gateway, "tiny-sd2", 1).await;
    let mut to_sd2 = body("a boat", 4, 3, 64);
    to_sd2["model"] = "tiny-sd2".into();
    let a = submit(&gateway, &to_sd2).await;
    let mut to_sd1 = body("a boat", 4, 3, 64);
    to_sd1["model"] = "tiny-sd1".into();
    let b = submit(&gateway, &to_sd1).await;
    for id in [&a, &b] {
        let job = wait_status(&gateway, id, &["succeeded", "failed"], LONG).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    assert!(sd2.log().contains(&a) && !sd1.log().contains(&a));
    assert!(sd1.log().contains(&b) && !sd2.log().contains(&b));
    let mut unknown = body("a boat", 4, 3, 64);
    unknown["model"] = "nope".into();
    let reply = post(&gateway, &unknown).await;
    assert_eq!(reply.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_503_and_the_fleet_recovers_when_it_returns() {
    let mut redis = RedisServer::start(true);
    let gateway = Proc::gateway(&redis, "gateway");
    let _worker = Proc::worker(&redis, "w", "tiny-sd1", &[]);
    wait_workers(&gateway, "tiny-sd1", 1).await;
    let before = submit(&gateway, &body("before", 1, 3, 64)).await;
    wait_status(&gateway, &before, &["succeeded"], LONG).await;
    // A job running while Redis is away keeps its result until it can be written.
    let across = submit(&gateway, &body("across", 5, 150, 128)).await;
    wait_status(&gateway, &across, &["running"], LONG).await;
    redis.stop();
    let reply = post(&gateway, &body("during", 2, 3, 64)).await;
    assert_eq!(reply.status(), 503);
    assert!(reply.headers().contains_key("retry-after"));
    let error: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(error["error"]["code"], "queue_unavailable", "{error}");
    redis.restart();
    // Recovers by itself: submits are accepted again and run.
    let started = std::time::Instant::now();
    let after = loop {
        let reply = post(&gateway, &body("after", 3, 3, 64)).await;
        if reply.status() == 202 {
            let json: serde_json::Value = reply.json().await.unwrap();
            break json["job_id"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed() < LONG, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let done = wait_status(&gateway, &after, &["succeeded", "failed"], LONG).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // With AOF the earlier result survived the restart.
    assert_eq!(job(&gateway, &before).await["status"], "succeeded");
    let across = wait_status(&gateway, &across, &["succeeded", "failed"], LONG).await;
    assert_eq!(across["status"], "succeeded", "{across}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_models_queue_is_bounded_with_429_and_retry_after() {
    let redis = RedisServer::start(false);
    let gateway = Proc::gateway_with(&redis, "gateway", 2);
    let mut worker = Proc::worker(&redis, "w", "tiny-sd1", &[]);
    wait_workers(&gateway, "tiny-sd1", 1).await;
    // The model stays known without its worker; its jobs wait.
    worker.kill();
    submit(&gateway, &body("one", 1, 3, 64)).await;
    submit(&gateway, &body("two", 2, 3, 64)).await;
    let reply = post(&gateway, &body("three", 3, 3, 64)).await;
    assert_eq!(reply.status(), 429);
    assert!(reply.headers().contains_key("retry-after"));
}

#[test]
fn work_help_lists_every_flag_with_its_env_var_and_roles_are_checked() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args(["work", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("--queue", "SD_QUEUE"),
        ("--model", "SD_MODEL"),
        ("--model-name", "SD_MODEL_NAME"),
        ("--models-dir", "SD_MODELS_DIR"),
        ("--worker-id", "SD_WORKER_ID"),
        ("--heartbeat-interval", "SD_HEARTBEAT_INTERVAL"),
        ("--claim-after", "SD_CLAIM_AFTER"),
        ("--max-attempts", "SD_MAX_ATTEMPTS"),
        ("--result-ttl", "SD_RESULT_TTL"),
        ("--preview-interval", "SD_PREVIEW_INTERVAL"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing:\n{help}"
        );
    }
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sd-worker"))
            .args(args)
            .env_remove("SD_MODEL")
            .env_remove("SD_QUEUE")
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let neither = run(&["serve", "--port", "0"]);
    assert!(
        neither.contains("--model or --models-dir is required"),
        "{neither}"
    );
    let both = run(&[
        "serve",
        "--port",
        "0",
        "--queue",
        "redis://127.0.0.1:1",
        "--model",
        "m",
    ]);
    assert!(both.contains("drop --model"), "{both}");
    let bad_url = run(&["serve", "--queue", "http://x"]);
    assert!(bad_url.contains("redis://"), "{bad_url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_a1111_api_works_through_a_gateway_on_a_password_protected_redis() {
    let redis = RedisServer::start_with(false, Some("s3cret-pw"));
    let gateway = Proc::gateway(&redis, "gateway");
    let _worker = Proc::worker(&redis, "w", "tiny-sd1", &[]);
    wait_workers(&gateway, "tiny-sd1", 1).await;
    let reply = reqwest::Client::new()
        .post(gateway.url("/sdapi/v1/txt2img"))
        .json(&serde_json::json!({"prompt": "a red fox", "steps": 3, "width": 64, "height": 64, "seed": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let json: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(json["images"].as_array().map(Vec::len), Some(1), "{json}");
    for log in [gateway.log(), _worker.log()] {
        assert!(
            !log.contains("s3cret-pw"),
            "the password leaked into a log:\n{log}"
        );
    }
}
