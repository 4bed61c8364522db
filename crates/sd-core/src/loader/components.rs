//! Building one network from its component folder (`unet/`, `vae/`, `text_encoder/`): config + weights.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};

use super::find_weight_files;
use super::weights::{var_builder, WeightFiles};
use crate::models::clip::{ClipTextConfig, ClipTextModel};
use crate::models::config::read_model_config;
use crate::models::unet::{UNet, UNetConfig};
use crate::models::vae::{AutoencoderKl, VaeConfig};
use crate::nn::KernelOptions;
use crate::{CoreError, Result};

/// A network with the weight files it was built from (kept to report unused tensors).
pub struct Loaded<M> {
    pub model: M,
    pub weights: Arc<WeightFiles>,
}

fn open_weights(dir: &Path, base: &str, variant: Option<&str>) -> Result<Arc<WeightFiles>> {
    if !dir.is_dir() {
        return Err(CoreError::file(dir, "component folder is missing"));
    }
    let files = find_weight_files(dir, base, variant)?;
    Ok(Arc::new(WeightFiles::open(&files)?))
}

fn config_file(dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join("config.json");
    if path.is_file() {
        Ok(path)
    } else {
        Err(CoreError::file(&path, "is missing"))
    }
}

/// Wraps a build failure with the component and the files it concerns.
fn build_error(dir: &Path, weights: &WeightFiles, e: impl std::fmt::Display) -> CoreError {
    let files: Vec<String> = weights
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    CoreError::Unsupported(format!("{} ({}): {e}", dir.display(), files.join(", ")))
}

/// Loads `dir`'s UNet with the default [`KernelOptions`].
pub fn load_unet(
    dir: &Path,
    dtype: DType,
    device: &Device,
    variant: Option<&str>,
) -> Result<Loaded<UNet>> {
    let config_path = config_file(dir)?;
    let config: UNetConfig = read_model_config(&config_path)?;
    let weights = open_weights(dir, "diffusion_pytorch_model", variant)?;
    build_unet(
        config,
        &config_path,
        weights,
        dtype,
        device,
        KernelOptions::default(),
    )
}

/// Builds a UNet from a config and weights (a folder's, or a component of a single file); `config_path`
/// names the config in errors.
pub fn build_unet(
    config: UNetConfig,
    config_path: &Path,
    weights: Arc<WeightFiles>,
    dtype: DType,
    device: &Device,
    kernels: KernelOptions,
) -> Result<Loaded<UNet>> {
    let vb = var_builder(&weights, dtype, device);
    let model = UNet::new(vb, config, config_path, kernels).map_err(|e| match e {
        CoreError::Candle(e) => build_error(config_path, &weights, e),
        other => other,
    })?;
    Ok(Loaded { model, weights })
}

/// Loads `dir`'s VAE with the default [`KernelOptions`].
pub fn load_vae(
    dir: &Path,
    dtype: DType,
    device: &Device,
    variant: Option<&str>,
) -> Result<Loaded<AutoencoderKl>> {
    let config_path = config_file(dir)?;
    let config: VaeConfig = read_model_config(&config_path)?;
    let weights = open_weights(dir, "diffusion_pytorch_model", variant)?;
    build_vae(
        config,
        &config_path,
        weights,
        dtype,
        device,
        KernelOptions::default(),
    )
}

pub fn build_vae(
    config: VaeConfig,
    config_path: &Path,
    weights: Arc<WeightFiles>,
    dtype: DType,
    device: &Device,
    kernels: KernelOptions,
) -> Result<Loaded<AutoencoderKl>> {
    let vb = var_builder(&weights, dtype, device);
    let model = AutoencoderKl::new(vb, config, config_path, kernels).map_err(|e| match e {
        CoreError::Candle(e) => build_error(config_path, &weights, e),
        other => other,
    })?;
    Ok(Loaded { model, weights })
}

/// A CLIP text encoder; weights may carry the published `text_model.` prefix or not (transformers 5 drops it).
pub fn load_text_encoder(
    dir: &Path,
    dtype: DType,
    device: &Device,
    variant: Option<&str>,
) -> Result<Loaded<ClipTextModel>> {
    let config_path = config_file(dir)?;
    let config: ClipTextConfig = read_model_config(&config_path)?;
    let weights = open_weights(dir, "model", variant)?;
    build_text_encoder(&config, &config_path, weights, dtype, device)
}

pub fn build_text_encoder(
    config: &ClipTextConfig,
    config_path: &Path,
    weights: Arc<WeightFiles>,
    dtype: DType,
    device: &Device,
) -> Result<Loaded<ClipTextModel>> {
    let vb = var_builder(&weights, dtype, device);
    let scope = if weights.contains("text_model.embeddings.token_embedding.weight") {
        vb.pp("text_model")
    } else {
        vb.clone()
    };
    let projection = weights
        .contains("text_projection.weight")
        .then(|| vb.clone());
    let model = ClipTextModel::new(scope, projection, config).map_err(|e| match e {
        CoreError::Candle(e) => build_error(config_path, &weights, e),
        other => other,
    })?;
    Ok(Loaded { model, weights })
}
