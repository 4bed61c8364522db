//! Cancelling inside a step: with the interrupt flag set, the UNet stops between its blocks, so a run ends with
//! `Cancelled` before its first step completes (a large image's single step can take minutes on a CPU).

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::*;
use sd_core::pipeline::{GenerateRequest, StepControl};
use sd_core::CoreError;

fn request() -> GenerateRequest {
    GenerateRequest {
        prompt: "a cube".into(),
        negative_prompt: String::new(),
        steps: 3,
        guidance_scale: 7.5,
        width: 64,
        height: 64,
        sampler: None,
        seeds: vec![1],
        clip_skip: 1,
        init: None,
        size_conditioning: Default::default(),
        prompt_syntax: Default::default(),
    }
}

#[test]
fn a_set_interrupt_flag_stops_the_unet_within_its_first_step() {
    let pipeline = load("tiny-sd1");
    let flag = Arc::new(AtomicBool::new(true));
    let mut steps = 0;
    let result = sd_core::interrupt::scope(&flag, || {
        pipeline.generate(&request(), &mut |_| {
            steps += 1;
            StepControl::Continue
        })
    });
    assert!(matches!(result, Err(CoreError::Cancelled)), "{result:?}");
    assert_eq!(steps, 0, "no step may complete once the flag is set");
    // Outside the scope the same pipeline runs to the end.
    let out = pipeline
        .generate(&request(), &mut |_| StepControl::Continue)
        .unwrap();
    assert_eq!(out.images.len(), 1);
}
