//! The same end-to-end scenarios against the binary's weightless fake backend (`--model fake:STEP`), which
//! exercise the binary's wiring without the inference core. Built with `--features fake-backend`.
#![cfg(feature = "fake-backend")]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

const FAKE: &str = "fake:5ms";

#[tokio::test]
async fn startup_and_ready() {
    common::scenario_startup_and_ready(FAKE).await;
}

#[tokio::test]
async fn submit_and_stream_png() {
    common::scenario_submit_and_stream_png(FAKE).await;
}

#[tokio::test]
async fn cancel() {
    common::scenario_cancel(FAKE).await;
}

#[tokio::test]
async fn sigterm() {
    common::scenario_sigterm(FAKE).await;
}

#[tokio::test]
async fn orchestrator_flags_and_heartbeat() {
    common::scenario_orchestrator_flags_and_heartbeat(FAKE).await;
}

#[tokio::test]
async fn transform_and_inpaint_jobs_complete() {
    common::scenario_transform_and_inpaint(FAKE).await;
}
