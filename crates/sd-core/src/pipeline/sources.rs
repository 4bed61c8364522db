//! Where a pipeline's parts come from: a diffusers folder (configs and weights per component folder) or a
//! single-file checkpoint (weights from the file under diffusers names; configs, tokenizers and scheduler
//! built in per family, or taken from `--model-config FOLDER` as diffusers' `from_single_file(config=...)`).
//! A `--vae` folder or file replaces the model's VAE either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::LoadOptions;
use crate::loader::single_file::{configs, keys, Checkpoint, Family, Part};
use crate::loader::weights::WeightFiles;
use crate::loader::{find_weight_files, ModelFolder};
use crate::models::clip::ClipTextConfig;
use crate::models::config::read_model_config;
use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::{CoreError, Result};

/// One network's config (with the path or label errors name) and weights.
pub(super) struct Component<C> {
    pub config: C,
    pub config_path: PathBuf,
    pub weights: Arc<WeightFiles>,
}

pub(super) struct Parts {
    pub reference: String,
    pub root: PathBuf,
    pub tokenizer: ClipTokenizer,
    pub text_encoder: Component<ClipTextConfig>,
    /// SDXL's second tokenizer and encoder.
    pub second: Option<(ClipTokenizer, Component<ClipTextConfig>)>,
    pub unet: Component<UNetConfig>,
    /// The VAE is opened after the family is known (its dtype and, for single files, its config depend on it).
    pub vae: VaeSource,
    pub scheduler: SchedulerConfig,
    pub force_zeros_for_empty_prompt: Option<bool>,
    /// Known from the file for single files; worked out from the configs for folders.
    pub family: Option<Family>,
}

pub(super) enum VaeSource {
    Folder(PathBuf),
    File(PathBuf),
    /// The checkpoint's own VAE, with its config.
    Ready(Box<Component<VaeConfig>>),
}

fn open(dir: &Path, base: &str, variant: Option<&str>) -> Result<Arc<WeightFiles>> {
    if !dir.is_dir() {
        return Err(CoreError::file(dir, "component folder is missing"));
    }
    Ok(Arc::new(WeightFiles::open(&find_weight_files(
        dir, base, variant,
    )?)?))
}

fn config_at<C: DeserializeOwned>(path: PathBuf) -> Result<(C, PathBuf)> {
    if !path.is_file() {
        return Err(CoreError::file(&path, "is missing"));
    }
    Ok((read_model_config(&path)?, path))
}

fn folder_component<C: DeserializeOwned>(
    dir: &Path,
    base: &str,
    variant: Option<&str>,
) -> Result<Component<C>> {
    let (config, config_path) = config_at(dir.join("config.json"))?;
    Ok(Component {
        config,
        config_path,
        weights: open(dir, base, variant)?,
    })
}

fn vae_override(options: &LoadOptions) -> Option<VaeSource> {
    options.vae.as_ref().map(|p| {
        if p.is_file() {
            VaeSource::File(p.clone())
        } else {
            VaeSource::Folder(p.clone())
        }
    })
}

/// A diffusers folder or hub id.
pub(super) fn from_folder(model: &str, options: &LoadOptions) -> Result<Parts> {
    let folder = ModelFolder::resolve(model, options.variant.as_deref(), &options.hub)?;
    let variant = options.variant.as_deref();
    let tokenizer = ClipTokenizer::from_dir(&folder.component("tokenizer"))?;
    let text_encoder = folder_component(&folder.component("text_encoder"), "model", variant)?;
    let second = if folder.index.has("text_encoder_2") {
        let dir = if folder.component("tokenizer_2").is_dir() {
            "tokenizer_2"
        } else {
            "tokenizer"
        };
        Some((
            ClipTokenizer::from_dir(&folder.component(dir))?,
            folder_component(&folder.component("text_encoder_2"), "model", variant)?,
        ))
    } else {
        None
    };
    let unet = folder_component(
        &folder.component("unet"),
        "diffusion_pytorch_model",
        variant,
    )?;
    let scheduler_path = folder.component("scheduler").join("scheduler_config.json");
    if !scheduler_path.is_file() {
        return Err(CoreError::file(&scheduler_path, "is missing"));
    }
    let mut scheduler = SchedulerConfig::from_file(&scheduler_path)?;
    if let Some(p) = &options.prediction_type {
        scheduler.prediction_type = Some(p.clone());
    }
    Ok(Parts {
        reference: folder.reference.clone(),
        root: folder.root.clone(),
        tokenizer,
        text_encoder,
        second,
        unet,
        vae: vae_override(options).unwrap_or(VaeSource::Folder(folder.component("vae"))),
        scheduler,
        force_zeros_for_empty_prompt: folder.index.force_zeros_for_empty_prompt,
        family: options.family,
    })
}

fn missing(path: &Path, what: &str, remedy: &str) -> CoreError {
    CoreError::file(path, format!("holds no {what}; {remedy}"))
}

/// A single `.safetensors` checkpoint in the original layout.
pub(super) fn from_single_file(path: &Path, options: &LoadOptions) -> Result<Parts> {
    let ckpt = Checkpoint::open(path, options.family)?;
    let family = ckpt.family;
    let config_dir = options.model_config.as_deref();
    let prediction = match &options.prediction_type {
        Some(p) => p.clone(),
        None => ckpt.detected_prediction_type()?.to_string(),
    };
    tracing::info!(file = %path.display(), family = family.name(), prediction_type = %prediction,
        overridden = ckpt.family_overridden, "single-file checkpoint");
    let label = |component: &str| PathBuf::from(format!("{} [{component}]", path.display()));
    let text = |part: Option<(Part, usize)>, dir: &str, open_clip: bool| -> Result<_> {
        let (part, layers) = part.ok_or_else(|| {
            missing(
                path,
                &format!("text encoder ({dir})"),
                "text encoders are not taken from elsewhere: use a checkpoint that includes them",
            )
        })?;
        let (config, config_path) = match config_dir {
            Some(d) => config_at::<ClipTextConfig>(d.join(dir).join("config.json"))?,
            None => (
                serde_json::from_value(
                    configs::text_config(&part.shapes, layers, open_clip)
                        .map_err(|e| CoreError::file(path, e))?,
                )
                .map_err(|e| CoreError::config(label(dir), e.to_string()))?,
                label(dir),
            ),
        };
        Ok(Component {
            config,
            config_path,
            weights: part.weights,
        })
    };
    let tokenizer_for = |dir: &str, open_clip: bool| match config_dir {
        Some(d) => ClipTokenizer::from_dir(&d.join(dir)),
        None => configs::clip_tokenizer(open_clip),
    };
    let text_encoder = text(ckpt.text_encoder()?, "text_encoder", family == Family::Sd2)?;
    let tokenizer = tokenizer_for("tokenizer", family == Family::Sd2)?;
    let second = match family {
        Family::Sdxl => {
            let encoder = text(ckpt.text_encoder_2()?, "text_encoder_2", true)?;
            Some((tokenizer_for("tokenizer_2", true)?, encoder))
        }
        _ => None,
    };
    let pooled_dim = second
        .as_ref()
        .and_then(|(_, e)| e.config.projection_dim)
        .unwrap_or(1280);
    let unet_part = ckpt.unet()?;
    let (unet_config, unet_path) = match config_dir {
        Some(d) => config_at(d.join("unet").join("config.json"))?,
        None => {
            let value = configs::unet_config(
                &ckpt.shapes,
                crate::loader::single_file::UNET_PREFIX,
                family,
                prediction == "v_prediction",
                pooled_dim,
            )
            .map_err(|e| CoreError::file(path, e))?;
            (
                serde_json::from_value(value)
                    .map_err(|e| CoreError::config(label("unet"), e.to_string()))?,
                label("unet"),
            )
        }
    };
    let vae = match vae_override(options) {
        Some(source) => source,
        None => match ckpt.vae()? {
            Some(part) => {
                let (config, config_path) = match config_dir {
                    Some(d) => config_at(d.join("vae").join("config.json"))?,
                    None => builtin_vae_config(
                        &ckpt.shapes,
                        crate::loader::single_file::VAE_PREFIX,
                        family,
                        &label("vae"),
                    )?,
                };
                VaeSource::Ready(Box::new(Component {
                    config,
                    config_path,
                    weights: part.weights,
                }))
            }
            None => {
                return Err(missing(
                    path,
                    "VAE (`first_stage_model.*`)",
                    "pass one with --vae (a folder or a .safetensors file)",
                ))
            }
        },
    };
    let mut scheduler = match config_dir {
        Some(d) => SchedulerConfig::from_file(&d.join("scheduler").join("scheduler_config.json"))?,
        None => configs::scheduler_config(family, &prediction)?,
    };
    if config_dir.is_none() || options.prediction_type.is_some() {
        scheduler.prediction_type = Some(prediction);
    }
    let force_zeros = match config_dir {
        Some(d) if d.join("model_index.json").is_file() => {
            crate::loader::ModelIndex::read(&d.join("model_index.json"))?
                .force_zeros_for_empty_prompt
        }
        _ => None,
    };
    Ok(Parts {
        reference: path.display().to_string(),
        root: path.to_path_buf(),
        tokenizer,
        text_encoder,
        second,
        unet: Component {
            config: unet_config,
            config_path: unet_path,
            weights: unet_part.weights,
        },
        vae,
        scheduler,
        force_zeros_for_empty_prompt: force_zeros,
        family: Some(family),
    })
}

fn builtin_vae_config(
    shapes: &configs::Shapes,
    prefix: &str,
    family: Family,
    label: &Path,
) -> Result<(VaeConfig, PathBuf)> {
    let value =
        configs::vae_config(shapes, prefix, family).map_err(|e| CoreError::file(label, e))?;
    let config =
        serde_json::from_value(value).map_err(|e| CoreError::config(label, e.to_string()))?;
    Ok((config, label.to_path_buf()))
}

/// Opens the VAE: a folder, a single VAE file (LDM layout with or without `first_stage_model.`, or diffusers
/// layout), or the checkpoint's own. A single VAE file takes its config from `--model-config` when given,
/// else from its shapes with the family's scaling factor.
pub(super) fn open_vae(
    source: VaeSource,
    family: Family,
    options: &LoadOptions,
) -> Result<Component<VaeConfig>> {
    match source {
        VaeSource::Ready(component) => Ok(*component),
        VaeSource::Folder(dir) => {
            folder_component(&dir, "diffusion_pytorch_model", options.variant.as_deref())
        }
        VaeSource::File(path) => open_vae_file(&path, family, options.model_config.as_deref()),
    }
}

fn open_vae_file(
    path: &Path,
    family: Family,
    config_dir: Option<&Path>,
) -> Result<Component<VaeConfig>> {
    crate::loader::single_file::refuse_pickle(path)?;
    let all = WeightFiles::open(&[path.to_path_buf()])?;
    let names: Vec<String> = all.names().cloned().collect();
    let keys_ref: Vec<&str> = names.iter().map(String::as_str).collect();
    let prefix = if names.iter().any(|k| k.starts_with("first_stage_model.")) {
        "first_stage_model."
    } else {
        ""
    };
    let diffusers_layout = names.iter().any(|k| k.starts_with("encoder.down_blocks."));
    let label = PathBuf::from(format!("{} [vae]", path.display()));
    let config_from_dir = |d: &Path| config_at::<VaeConfig>(d.join("vae").join("config.json"));
    if diffusers_layout {
        let (config, config_path) = match config_dir {
            Some(d) => config_from_dir(d)?,
            None => {
                let shapes = all.shapes();
                let value = configs::diffusers_vae_config(&shapes, family)
                    .map_err(|e| CoreError::file(path, e))?;
                (
                    serde_json::from_value(value)
                        .map_err(|e| CoreError::config(&label, e.to_string()))?,
                    label,
                )
            }
        };
        return Ok(Component {
            config,
            config_path,
            weights: Arc::new(all),
        });
    }
    if !names
        .iter()
        .any(|k| k.starts_with(&format!("{prefix}decoder.up.")))
    {
        return Err(CoreError::file(
            path,
            "not a VAE: no `decoder.up.*` (LDM) or `encoder.down_blocks.*` (diffusers) tensors",
        ));
    }
    let map = keys::vae_map(&keys_ref, prefix).map_err(|e| CoreError::file(path, e))?;
    let (config, config_path) = match config_dir {
        Some(d) => config_from_dir(d)?,
        None => builtin_vae_config(&all.shapes(), prefix, family, &label)?,
    };
    Ok(Component {
        config,
        config_path,
        weights: Arc::new(WeightFiles::open_mapped(path, map.into_iter().collect())?),
    })
}
