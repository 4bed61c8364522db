//! The model flags every command shares (`--model`, `--device`, `--dtype`, hub, VAE, kernels, single-file
//! hints) -> the core's [`LoadOptions`]: `generate`, `serve`, `work` and `bench` load models through this.

use sd_core::loader::hub::HubOptions;
use sd_core::loader::single_file::{parse_prediction_type, Family};
use sd_core::pipeline::{DTypeSpec, DeviceSpec, LoadOptions, VaeTiling};

use crate::cli::ModelArgs;

pub fn load_options(model: &ModelArgs) -> anyhow::Result<LoadOptions> {
    let device = DeviceSpec::parse(&model.device)?;
    let dtype = match &model.dtype {
        Some(d) => DTypeSpec::parse(d)?,
        None => DTypeSpec::default_for(&device),
    };
    Ok(LoadOptions {
        device,
        dtype,
        variant: model.variant.clone(),
        hub: HubOptions {
            cache_dir: model.hf_cache.clone(),
            offline: model.offline,
            token: model.hf_token.clone(),
            endpoint: model.hf_endpoint.clone(),
            progress: None,
        },
        vae: model.vae.clone(),
        vae_tiling: VaeTiling::parse(&model.vae_tiling)?,
        vae_memory_budget: model.vae_memory_budget.or_else(half_available_memory),
        flash_attention: model.flash_attention,
        conv_workspace_limit_mib: model.conv_workspace_limit_mib,
        embedding_dirs: model.embeddings_dirs.clone(),
        family: model.family.as_deref().map(Family::parse).transpose()?,
        prediction_type: model
            .prediction_type
            .as_deref()
            .map(parse_prediction_type)
            .transpose()?,
        model_config: model.model_config.clone(),
    })
}

/// Half of `MemAvailable` from /proc/meminfo (Linux): the default VAE memory budget. `None` elsewhere.
fn half_available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024 / 2)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[derive(clap::Parser)]
    struct ModelOnly {
        #[command(flatten)]
        model: ModelArgs,
    }

    fn options(args: &[&str]) -> LoadOptions {
        use clap::Parser;
        let parsed = ModelOnly::try_parse_from([&["sd-worker", "--model", "m"], args].concat())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        load_options(&parsed.model).unwrap()
    }

    #[test]
    fn cuda_tuning_flags_reach_the_load_options() {
        let defaults = options(&[]);
        assert!(defaults.flash_attention);
        assert_eq!(defaults.conv_workspace_limit_mib, None);
        let tuned = options(&[
            "--flash-attention",
            "false",
            "--conv-workspace-limit-mib",
            "256",
        ]);
        assert!(!tuned.flash_attention);
        assert_eq!(tuned.conv_workspace_limit_mib, Some(256));
    }

    #[test]
    fn single_file_flags_reach_the_load_options() {
        let defaults = options(&[]);
        assert_eq!((defaults.family, defaults.prediction_type), (None, None));
        let set = options(&[
            "--family",
            "SD2",
            "--prediction-type",
            "v-prediction",
            "--model-config",
            "cfg",
        ]);
        assert_eq!(set.family, Some(Family::Sd2));
        assert_eq!(set.prediction_type.as_deref(), Some("v_prediction"));
        assert_eq!(set.model_config, Some(PathBuf::from("cfg")));
        let parsed = <ModelOnly as clap::Parser>::try_parse_from([
            "sd-worker",
            "--model",
            "m",
            "--family",
            "sd3",
        ]);
        let err = load_options(&parsed.unwrap().model)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sd1, sd2 or sdxl"), "{err}");
    }
}
