//! Turning a model reference (a diffusers folder or a hub id) into configs and weight files.
//!
//! A diffusers folder holds `model_index.json` and one folder per component. Weights are found per component
//! in this order: the requested variant (`*.fp16.safetensors`, or its sharded index), the plain file, the plain
//! sharded index (`*.safetensors.index.json`), then any variant as a last resort.

pub mod components;
pub mod hub;
pub mod single_file;
pub mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{CoreError, Result};

/// `model_index.json`: the pipeline class and which component folders exist.
#[derive(Clone, Debug)]
pub struct ModelIndex {
    pub class_name: String,
    /// component name -> (library, class), e.g. `unet` -> (`diffusers`, `UNet2DConditionModel`).
    pub components: BTreeMap<String, (String, String)>,
    pub force_zeros_for_empty_prompt: Option<bool>,
}

impl ModelIndex {
    pub fn read(path: &Path) -> Result<Self> {
        let value: serde_json::Value = crate::models::config::read_json(path)?;
        let obj = value
            .as_object()
            .ok_or_else(|| CoreError::config(path, "expected a JSON object"))?;
        let class_name = obj
            .get("_class_name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| CoreError::config(path, "missing `_class_name`"))?
            .to_string();
        let mut components = BTreeMap::new();
        for (name, v) in obj {
            if name.starts_with('_') {
                continue;
            }
            if let Some([lib, class]) = v.as_array().map(|a| a.as_slice()) {
                if let (Some(lib), Some(class)) = (lib.as_str(), class.as_str()) {
                    components.insert(name.clone(), (lib.to_string(), class.to_string()));
                }
            }
        }
        let force_zeros_for_empty_prompt = obj
            .get("force_zeros_for_empty_prompt")
            .and_then(|v| v.as_bool());
        Ok(Self {
            class_name,
            components,
            force_zeros_for_empty_prompt,
        })
    }

    pub fn has(&self, component: &str) -> bool {
        self.components.contains_key(component)
    }
}

/// A resolved local diffusers folder.
#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub root: PathBuf,
    pub index: ModelIndex,
    /// What the user asked for (a path or a hub id), for reports.
    pub reference: String,
}

impl ModelFolder {
    /// A local folder, or a hub id resolved through the Hugging Face cache (and the network, when built with the
    /// `hub` feature and online).
    pub fn resolve(
        reference: &str,
        variant: Option<&str>,
        hub_options: &hub::HubOptions,
    ) -> Result<Self> {
        let path = Path::new(reference);
        let root = if path.exists() {
            if !path.is_dir() {
                return Err(CoreError::file(
                    path,
                    "is a file; pass a diffusers folder (with model_index.json) or a hub id like org/name",
                ));
            }
            path.to_path_buf()
        } else if hub::looks_like_hub_id(reference) {
            hub::resolve(reference, variant, hub_options)?
        } else {
            return Err(CoreError::NotAvailable(format!(
                "`{reference}` is neither an existing folder nor a hub id of the form org/name"
            )));
        };
        let index_path = root.join("model_index.json");
        if !index_path.is_file() {
            return Err(CoreError::file(
                &root,
                "has no model_index.json: not a diffusers pipeline folder",
            ));
        }
        let index = ModelIndex::read(&index_path)?;
        Ok(Self {
            root,
            index,
            reference: reference.to_string(),
        })
    }

    pub fn component(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The safetensors files holding component `dir`'s weights (`base` is `model` for text encoders and
/// `diffusion_pytorch_model` for diffusers models).
pub fn find_weight_files(dir: &Path, base: &str, variant: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
    if let Some(v) = variant {
        candidates.push((dir.join(format!("{base}.{v}.safetensors")), false));
        candidates.push((dir.join(format!("{base}.safetensors.index.{v}.json")), true));
    }
    candidates.push((dir.join(format!("{base}.safetensors")), false));
    candidates.push((dir.join(format!("{base}.safetensors.index.json")), true));
    for (path, is_index) in &candidates {
        if path.is_file() {
            return if *is_index {
                shard_files(path)
            } else {
                Ok(vec![path.clone()])
            };
        }
    }
    // Last resort: a variant the user did not ask for (e.g. a folder that only ships fp16 files).
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut others: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{base}.")) && n.ends_with(".safetensors")
                })
            })
            .collect();
        others.sort();
        if let Some(first) = others.into_iter().next() {
            tracing::warn!(file = %first.display(), "using a weight variant that was not requested");
            return Ok(vec![first]);
        }
    }
    let bin = dir.join(format!("{base}.bin"));
    let hint = if bin.is_file() {
        " (found a PyTorch .bin file: only safetensors weights are supported)"
    } else {
        ""
    };
    let tried: Vec<String> = candidates
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    Err(CoreError::file(
        dir,
        format!(
            "no safetensors weights found; looked for {}{hint}",
            tried.join(", ")
        ),
    ))
}

fn shard_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    let index: ShardIndex = crate::models::config::read_json(index_path)?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = index.weight_map.values().map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    for f in &files {
        if !f.is_file() {
            return Err(CoreError::file(
                f,
                format!("shard listed in {} is missing", index_path.display()),
            ));
        }
    }
    Ok(files)
}
