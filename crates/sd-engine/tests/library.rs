//! The engine with a model library of fake backends: a job for another model waits for its load (and says
//! so with a `loading` event), a model that fails to load fails only the jobs that name it, unknown names are
//! refused with the list of models, and the LRU reloads only what it evicted.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use std::sync::Arc;
use std::time::Duration;

use sd_core::pipeline::GenerateRequest;
use sd_engine::fake::FakeBackend;
use sd_engine::{
    Backend, Engine, EngineConfig, JobEvent, JobRequest, JobStatus, LibraryModel, LoaderFactory,
    ModelLibrary, ModelSet, Operation, SubmitError,
};

fn request(seed: u64, steps: usize) -> JobRequest {
    JobRequest {
        operation: Operation::ImageGeneration,
        generate: GenerateRequest {
            prompt: "p".into(),
            negative_prompt: String::new(),
            steps,
            guidance_scale: 7.5,
            width: 16,
            height: 16,
            sampler: None,
            seeds: vec![seed],
            clip_skip: 1,
            init: None,
            size_conditioning: Default::default(),
            prompt_syntax: Default::default(),
        },
    }
}

async fn finish(engine: &Engine, id: &str) -> sd_engine::JobSnapshot {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let job = engine.job(id).unwrap();
            if job.status.is_finished() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap()
}

fn engine(dir: &std::path::Path, max_loaded: usize) -> Engine {
    for name in ["a", "b", "bad"] {
        std::fs::write(dir.join(format!("{name}.safetensors")), name).unwrap();
    }
    let factory: LoaderFactory = Arc::new(|model: &LibraryModel, _hash| {
        let name = model.name.clone();
        Box::new(move || {
            if name == "bad" {
                return Err("not a readable safetensors file".into());
            }
            std::thread::sleep(Duration::from_millis(50));
            Ok(Box::new(FakeBackend::new(Duration::from_millis(20))) as Box<dyn Backend>)
        })
    });
    let library = ModelLibrary::new(vec![dir.to_owned()], factory);
    let first = library.loader("a").unwrap();
    Engine::start_models(
        ModelSet {
            library: Some(library),
            initial: vec![("a".into(), first)],
            max_loaded,
            memory_budget: None,
        },
        EngineConfig::default(),
    )
    .unwrap()
}

fn loads(engine: &Engine) -> String {
    engine
        .metrics()
        .lines()
        .find(|line| line.starts_with("sd_worker_model_loads_total"))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn jobs_switch_models_and_a_broken_model_fails_only_its_jobs() {
    let dir = tempfile_dir("switch");
    let engine = engine(&dir, 1);
    engine.wait_loaded().await.unwrap();
    assert_eq!(engine.default_model(), "a");
    assert_eq!(engine.model_names(), ["a", "b", "bad"]);

    // A slow job for `a` keeps `b`'s job queued while we subscribe, so its `loading` event is seen live.
    let first = engine.submit_to(Some("a"), request(1, 5)).unwrap();
    let second = engine
        .submit_to(Some("b.safetensors"), request(2, 1))
        .unwrap();
    let mut events = engine.subscribe(&second.id).unwrap().live.unwrap();
    let mut seen = Vec::new();
    while let Ok(event) = events.recv().await {
        let end = event.is_terminal();
        seen.push(event);
        if end {
            break;
        }
    }
    assert!(
        seen.contains(&JobEvent::Loading { model: "b".into() }),
        "{seen:?}"
    );
    let loading = seen
        .iter()
        .position(|e| matches!(e, JobEvent::Loading { .. }));
    let started = seen.iter().position(|e| matches!(e, JobEvent::Started {}));
    assert!(started < loading, "{seen:?}");
    assert_eq!(
        finish(&engine, &first.id).await.status,
        JobStatus::Succeeded
    );
    assert_eq!(
        finish(&engine, &second.id).await.status,
        JobStatus::Succeeded
    );
    assert_eq!(engine.models().iter().filter(|m| m.loaded).count(), 1);

    let bad = engine.submit_to(Some("bad"), request(3, 1)).unwrap();
    let after = engine.submit_to(Some("a"), request(4, 1)).unwrap();
    let failed = finish(&engine, &bad.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.code, "model_load_failed");
    assert!(error.message.contains("not a readable"), "{error:?}");
    assert_eq!(
        finish(&engine, &after.id).await.status,
        JobStatus::Succeeded
    );
    // a, b, a again (one slot); the failed load is not counted.
    assert!(loads(&engine).ends_with(" 3"), "{}", loads(&engine));

    match engine.submit_to(Some("nope"), request(5, 1)) {
        Err(SubmitError::UnknownModel(unknown)) => {
            assert_eq!(unknown.available, ["a", "b", "bad"]);
            assert!(unknown.to_string().contains("a, b, bad"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(engine.set_default_model("b [x]").unwrap(), "b");
    assert_eq!(engine.default_model(), "b");
    assert!(engine.set_default_model("nope").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_slots_keep_both_models_loaded() {
    let dir = tempfile_dir("slots");
    let engine = engine(&dir, 2);
    engine.wait_loaded().await.unwrap();
    let mut ids = Vec::new();
    for (index, model) in ["b", "a", "b", "a"].into_iter().enumerate() {
        ids.push(
            engine
                .submit_to(Some(model), request(index as u64, 1))
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        assert_eq!(finish(&engine, id).await.status, JobStatus::Succeeded);
    }
    assert!(loads(&engine).ends_with(" 2"), "{}", loads(&engine));
    let loaded: Vec<String> = engine
        .models()
        .into_iter()
        .filter(|model| model.loaded)
        .map(|model| model.model.name)
        .collect();
    assert_eq!(loaded, ["a", "b"]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sd-engine-library-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
