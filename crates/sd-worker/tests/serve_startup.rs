//! The real binary starting up: listening at once, ready on the tiny model, refusing what it must.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{tiny_model, Worker};

#[tokio::test]
async fn listens_at_once_and_is_ready_on_the_tiny_model() {
    common::scenario_startup_and_ready(&tiny_model()).await;
}

#[tokio::test]
async fn orchestrator_flags_are_accepted_and_heartbeats_reach_the_queen() {
    common::scenario_orchestrator_flags_and_heartbeat(&tiny_model()).await;
}

#[test]
fn a_model_that_cannot_load_exits_non_zero_and_says_why() {
    let mut worker = Worker::start("/nonexistent/model-folder", &[]);
    let status = worker.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = worker.log();
    assert!(
        log.contains("cannot load model") && log.contains("/nonexistent/model-folder"),
        "{log}"
    );
}

#[test]
fn without_a_key_only_loopback_is_served() {
    let mut worker = Worker::start("/nonexistent", &["--host", "0.0.0.0"]);
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(
        worker
            .log()
            .contains("refusing to listen on 0.0.0.0 without an API key"),
        "{}",
        worker.log()
    );
}

#[test]
fn help_lists_every_flag_with_its_env_var() {
    let output = Command::new(env!("CARGO_BIN_EXE_sd-worker"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("--model", "SD_MODEL"),
        ("--host", "SD_HOST"),
        ("--port", "SD_PORT"),
        ("--device", "SD_DEVICE"),
        ("--dtype", "SD_DTYPE"),
        ("--api-key", "SD_API_KEY"),
        ("--api-key-file", "SD_API_KEY_FILE"),
        ("--insecure-no-auth", "SD_INSECURE_NO_AUTH"),
        ("--max-queue", "SD_MAX_QUEUE"),
        ("--result-ttl", "SD_RESULT_TTL"),
        ("--max-results", "SD_MAX_RESULTS"),
        ("--cors-origin", "SD_CORS_ORIGINS"),
        ("--worker-id", "SD_WORKER_ID"),
        ("--queen-url", "SD_QUEEN_URL"),
        ("--heartbeat-interval", "SD_HEARTBEAT_INTERVAL"),
        ("--shutdown-grace", "SD_SHUTDOWN_GRACE"),
        ("--preview-interval", "SD_PREVIEW_INTERVAL"),
        ("--max-body-mb", "SD_MAX_BODY_MB"),
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
        assert!(
            help.contains(&format!("env: {env}")),
            "{env} missing from help:\n{help}"
        );
    }
}
