//! Every image the engine produces carries A1111's `parameters` infotext describing exactly how it was made.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use std::time::Duration;

use image::{GrayImage, RgbImage};
use sd_core::pipeline::{GenerateRequest, InitImage};
use sd_core::schedulers::SamplerKind;
use sd_engine::fake::FakeBackend;
use sd_engine::metadata::{read_parameters, Infotext};
use sd_engine::{Backend, Engine, EngineConfig, JobRequest, JobStatus, Operation};

async fn engine() -> Engine {
    let loader = Box::new(|| Ok(Box::new(FakeBackend::new(Duration::ZERO)) as Box<dyn Backend>));
    let engine = Engine::start(loader, EngineConfig::default()).unwrap();
    engine.wait_loaded().await.unwrap();
    engine
}

fn request(seeds: Vec<u64>) -> GenerateRequest {
    GenerateRequest {
        prompt: "a red fox, snow: dusk".into(),
        negative_prompt: "blurry".into(),
        steps: 3,
        guidance_scale: 6.5,
        width: 64,
        height: 48,
        sampler: Some(SamplerKind::DpmPp2MKarras),
        seeds,
        clip_skip: 2,
        init: None,
        size_conditioning: Default::default(),
        prompt_syntax: Default::default(),
    }
}

async fn run(engine: &Engine, operation: Operation, generate: GenerateRequest) -> String {
    let id = engine
        .submit(JobRequest {
            operation,
            generate,
        })
        .unwrap()
        .id;
    for _ in 0..500 {
        if engine.job(&id).unwrap().status.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.job(&id).unwrap().status, JobStatus::Succeeded);
    id
}

#[tokio::test]
async fn each_png_carries_its_own_settings_and_seed() {
    let engine = engine().await;
    assert_eq!(
        engine.model_hash().unwrap().short(),
        FakeBackend::model_hash().short()
    );
    let id = run(&engine, Operation::ImageGeneration, request(vec![7, 8])).await;
    for (index, seed) in [(0, 7), (1, 8)] {
        let png = engine.image(&id, index).unwrap();
        let text = read_parameters(&png).unwrap();
        let version = format!("sd-worker v{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            text,
            format!(
                "a red fox, snow: dusk\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M, \
                 Schedule type: Karras, CFG scale: 6.5, Seed: {seed}, Size: 64x48, Model hash: fa4e0000f4, \
                 Model: fake, Clip skip: 2, Version: {version}"
            )
        );
        let parsed = Infotext::parse(&text);
        assert_eq!(parsed.prompt, "a red fox, snow: dusk");
        assert_eq!(parsed.get("Seed"), Some(seed.to_string().as_str()));
    }
}

#[tokio::test]
async fn img2img_records_denoising_strength_and_default_sampler() {
    let engine = engine().await;
    let mut generate = request(vec![1]);
    generate.sampler = None;
    generate.clip_skip = 1;
    generate.init = Some(InitImage {
        image: RgbImage::new(64, 48),
        strength: 0.6,
        mask: Some(GrayImage::new(64, 48)),
        preserve_unmasked: true,
    });
    let id = run(&engine, Operation::ImageInpaint, generate).await;
    let parsed = Infotext::parse(&read_parameters(&engine.image(&id, 0).unwrap()).unwrap());
    // The fake's default sampler is PNDM, which A1111 calls PLMS.
    assert_eq!(parsed.get("Sampler"), Some("PLMS"));
    assert_eq!(parsed.get("Schedule type"), Some("Automatic"));
    assert_eq!(parsed.get("Denoising strength"), Some("0.6"));
    assert_eq!(parsed.get("Clip skip"), None);
}
