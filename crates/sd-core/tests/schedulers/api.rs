//! The schedulers through their public API beyond single golden runs: timesteps for many step counts, the
//! sample's dtype, stepping past the end, seeded noise and refused requests.

use anyhow::{anyhow, Result};
use candle_core::DType;
use sd_core::rng::BatchRng;
use sd_core::schedulers::{build_scheduler, SamplerKind, SchedulerConfig};
use serde_json::Value;

use super::{check, fake_model, get, tensors, values, Goldens, SCHEDULE_TOL};

/// Timesteps (and Karras sigmas) for many step counts, including the ones where numpy's `arange` adds an
/// extra trailing timestep.
#[test]
fn schedulers_timesteps_match_diffusers_for_many_step_counts() -> Result<()> {
    let g = Goldens::load()?;
    let table = tensors("timesteps.safetensors")?;
    let base = g.index["configs"]["sd15"]
        .as_object()
        .cloned()
        .ok_or_else(|| anyhow!("no sd15 config"))?;
    let mut failures = Vec::new();
    let mut count = 0;
    for group in g.index["timesteps"].as_array().into_iter().flatten() {
        let name = group["name"].as_str().unwrap_or_default();
        let kind = SamplerKind::parse(group["sampler"].as_str().unwrap_or_default())?;
        let mut raw = base.clone();
        for (k, v) in group["sd15_overrides"].as_object().into_iter().flatten() {
            raw.insert(k.clone(), v.clone());
        }
        let config = SchedulerConfig::from_json(&Value::Object(raw).to_string())?;
        for n in group["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
        {
            count += 1;
            let key = format!("{name}/{n}");
            let result = (|| -> Result<()> {
                let scheduler = build_scheduler(kind, &config, n as usize)?;
                let theirs = values(get(&table, &key)?)?;
                let ours: Vec<f64> = scheduler
                    .timesteps()
                    .iter()
                    .map(|&t| t as f32 as f64)
                    .collect();
                check(&ours, &theirs, SCHEDULE_TOL, &format!("{key} timesteps"))?;
                if let Some(golden_sigmas) = table.get(&format!("{key}/sigmas")) {
                    let ours: Vec<f64> = scheduler
                        .sigmas()
                        .unwrap_or_default()
                        .iter()
                        .map(|&s| s as f64)
                        .collect();
                    check(
                        &ours,
                        &values(golden_sigmas)?,
                        SCHEDULE_TOL,
                        &format!("{key} sigmas"),
                    )?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                failures.push(format!("{e:#}"));
            }
        }
    }
    assert!(count > 500, "only {count} timestep lists");
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn schedulers_keep_the_sample_dtype() -> Result<()> {
    let g = Goldens::load()?;
    let config = g.config("sd15")?;
    let x = g.input("x0")?.to_dtype(DType::F16)?;
    let mut rng = BatchRng::from_seeds(&g.seeds());
    for kind in [
        SamplerKind::Ddim,
        SamplerKind::Euler,
        SamplerKind::DpmPp2M,
        SamplerKind::UniPc,
        SamplerKind::Heun,
    ] {
        let mut s = build_scheduler(kind, &config, 4)?;
        let x_in = s.scale_model_input(&x)?;
        assert_eq!(x_in.dtype(), DType::F16, "{kind} scale_model_input");
        let t = s.timesteps()[0];
        let out = s.step(&fake_model(&x_in, t)?, &x, &mut rng)?;
        assert_eq!(out.dtype(), DType::F16, "{kind} step");
        assert_eq!(
            s.add_noise(&x, &x, 0)?.dtype(),
            DType::F16,
            "{kind} add_noise"
        );
    }
    Ok(())
}

#[test]
fn schedulers_error_when_stepping_past_the_end() -> Result<()> {
    let g = Goldens::load()?;
    let config = g.config("sd15")?;
    let x = g.input("x0")?;
    let mut rng = BatchRng::from_seeds(&g.seeds());
    for &kind in SamplerKind::all() {
        let mut s = build_scheduler(kind, &config, 2)?;
        for _ in 0..s.timesteps().len() {
            s.step(x, x, &mut rng)?;
        }
        assert!(s.step(x, x, &mut rng).is_err(), "{kind}");
        assert!(s.add_noise(x, x, 1000).is_err(), "{kind}");
    }
    Ok(())
}

#[test]
fn schedulers_stochastic_steps_follow_the_seeds() -> Result<()> {
    let g = Goldens::load()?;
    let config = g.config("sd15")?;
    let x = g.input("x0")?;
    for kind in [SamplerKind::EulerAncestral, SamplerKind::Lcm] {
        let run = |seeds: &[u64]| -> Result<Vec<f64>> {
            let mut s = build_scheduler(kind, &config, 4)?;
            let mut rng = BatchRng::from_seeds(seeds);
            values(&s.step(x, x, &mut rng)?)
        };
        assert_eq!(run(&[1, 2])?, run(&[1, 2])?, "{kind} is not reproducible");
        let (a, b) = (run(&[1, 2])?, run(&[1, 3])?);
        let half = a.len() / 2;
        assert_eq!(
            a[..half],
            b[..half],
            "{kind}: image 0 must not depend on image 1's seed"
        );
        assert_ne!(a[half..], b[half..], "{kind}: image 1 ignores its seed");
    }
    Ok(())
}

#[test]
fn schedulers_reject_invalid_requests() -> Result<()> {
    let g = Goldens::load()?;
    let config = g.config("sd15")?;
    for &kind in SamplerKind::all() {
        assert!(
            build_scheduler(kind, &config, 0).is_err(),
            "{kind} with 0 steps"
        );
    }
    assert!(build_scheduler(SamplerKind::Ddim, &config, 1001).is_err());
    assert!(build_scheduler(SamplerKind::Lcm, &config, 51).is_err());
    let prk = SchedulerConfig::from_json(r#"{"skip_prk_steps": false}"#)?;
    assert!(build_scheduler(SamplerKind::Pndm, &prk, 3).is_err());
    let sde = SchedulerConfig::from_json(r#"{"algorithm_type": "sde-dpmsolver++"}"#)?;
    let e = build_scheduler(SamplerKind::DpmPp2M, &sde, 10)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("sde-dpmsolver++"), "{e}");
    let ancestral_sample = SchedulerConfig::from_json(r#"{"prediction_type": "sample"}"#)?;
    assert!(build_scheduler(SamplerKind::EulerAncestral, &ancestral_sample, 10).is_err());
    assert!(build_scheduler(SamplerKind::Euler, &ancestral_sample, 10).is_ok());
    Ok(())
}
