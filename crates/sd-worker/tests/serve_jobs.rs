//! The real binary generating on the tiny model: submit and stream to a PNG, cancel queued and running.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

mod common;

use common::tiny_model;

#[tokio::test]
async fn submit_and_stream_to_done_with_a_png() {
    common::scenario_submit_and_stream_png(&tiny_model()).await;
}

#[tokio::test]
async fn cancel_queued_and_running_jobs() {
    common::scenario_cancel(&tiny_model()).await;
}

#[tokio::test]
async fn transform_and_inpaint_jobs_complete() {
    common::scenario_transform_and_inpaint(&tiny_model()).await;
}
