//! `sd-worker bench`: loads a model and prints [`sd_core::pipeline::bench::BenchReport`] as one JSON line on
//! stdout (load time included), for tools/bench_cuda.py to set against diffusers.

use std::time::Instant;

use anyhow::Context;
use sd_core::pipeline::bench::BenchSpec;
use sd_core::pipeline::Pipeline;

use crate::cli::BenchArgs;
use crate::model_options::load_options;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let options = load_options(&args.model)?;
    sd_core::cpu::set_enabled(args.cpu_kernels);
    // Fused kernels are checked against their plain compositions before anything is timed with them, and
    // before the model loads, with their scratch memory handed back, so they add nothing to the peak.
    let checks = {
        let device = options.device.open()?;
        let checks = sd_core::verify::verify_kernels(&device)?;
        sd_core::device::release_cached_memory(&device)?;
        checks
    };
    let in_use = |c: &&sd_core::verify::KernelCheck| {
        args.model.flash_attention || c.kernel != "flash_attention"
    };
    if let Some(bad) = checks.iter().filter(in_use).find(|c| !c.passed()) {
        anyhow::bail!("fused kernel check failed: {bad:?}");
    }
    tracing::info!(
        checks = checks.len(),
        "fused kernels agree with their plain compositions"
    );
    let started = Instant::now();
    let pipeline = Pipeline::load(&args.model.model, &options)?;
    let load_s = started.elapsed().as_secs_f64();
    let info = pipeline.info().clone();

    let spec = BenchSpec {
        prompt: args.prompt,
        negative_prompt: args.negative_prompt,
        width: args.width.unwrap_or(info.default_width),
        height: args.height.unwrap_or(info.default_height),
        steps: args.steps,
        guidance_scale: args.guidance,
        seed: args.seed,
        component_repeats: args.repeats,
        warmup: args.warmup,
        end_to_end_repeats: args.runs,
    };
    tracing::info!(model = %info.model, device = %info.device, dtype = %info.dtype,
        width = spec.width, height = spec.height, steps = spec.steps, "benchmarking");
    let report = pipeline.benchmark(&spec, &mut |phase| tracing::info!("timing {phase}"))?;
    if let (Some(path), Some(image)) = (&args.out, &report.image) {
        image
            .save(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.dump {
        report
            .save_outputs(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut json = serde_json::to_value(&report)?;
    json["load_s"] = serde_json::json!(load_s);
    json["width"] = serde_json::json!(spec.width);
    json["height"] = serde_json::json!(spec.height);
    json["steps"] = serde_json::json!(spec.steps);
    json["device"] = serde_json::json!(info.device);
    json["dtype"] = serde_json::json!(info.dtype);
    json["kernel_checks"] = serde_json::to_value(&checks)?;
    println!("{json}");
    Ok(())
}
