//! Hub ids (`org/name`): resolved from the local Hugging Face cache, and downloaded when the binary has the
//! `hub` feature and the machine has a network. Offline and not cached, the error says so plainly.

use std::path::PathBuf;

use crate::{CoreError, Result};

/// `org/name` with no path separators beyond the one slash, and not an existing path.
pub fn looks_like_hub_id(reference: &str) -> bool {
    let parts: Vec<&str> = reference.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        && !reference.starts_with('.')
}

/// Files a pipeline may need, relative to the repo root, before weights.
const CONFIG_FILES: &[&str] = &[
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "tokenizer_2/vocab.json",
    "tokenizer_2/merges.txt",
    "tokenizer_2/tokenizer_config.json",
    "tokenizer_2/special_tokens_map.json",
    "unet/config.json",
    "vae/config.json",
];

/// How to reach the hub: where its cache lives and whether the network may be used.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// The hub cache folder (`$HF_HOME/hub`); `None` = hf-hub's default from the environment.
    pub cache_dir: Option<PathBuf>,
    /// Only read the cache, never download.
    pub offline: bool,
}

#[cfg(feature = "hub")]
pub fn resolve(id: &str, variant: Option<&str>, options: &HubOptions) -> Result<PathBuf> {
    use hf_hub::{Cache, Repo};

    let repo = Repo::model(id.to_string());
    let cache_root = match &options.cache_dir {
        Some(dir) => Cache::new(dir.clone()),
        None => Cache::from_env(),
    };
    let cache = cache_root.repo(repo.clone());
    let api = if options.offline {
        None
    } else {
        let builder = match &options.cache_dir {
            Some(dir) => hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(dir.clone())),
            None => hf_hub::api::sync::ApiBuilder::from_env(),
        };
        builder
            .with_progress(false)
            .build()
            .ok()
            .map(|a| a.repo(repo))
    };
    let fetch = |file: &str| -> Option<PathBuf> {
        if let Some(p) = cache.get(file) {
            return Some(p);
        }
        let api = api.as_ref()?;
        match api.get(file) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(%file, error = %e, "not fetched from the hub");
                None
            }
        }
    };
    let index = fetch("model_index.json").ok_or_else(|| {
        CoreError::NotAvailable(format!(
            "`{id}` is not a local folder and is not in the Hugging Face cache ({}), and it could not be downloaded \
             (no network, or no such repo). Download it where there is a network (e.g. `huggingface-cli download {id}`) \
             or pass a local diffusers folder",
            cache_root.path().display()
        ))
    })?;
    for file in CONFIG_FILES {
        let _ = fetch(file);
    }
    for (component, base) in [
        ("text_encoder", "model"),
        ("text_encoder_2", "model"),
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
    ] {
        let mut names = Vec::new();
        if let Some(v) = variant {
            names.push(format!("{component}/{base}.{v}.safetensors"));
            names.push(format!("{component}/{base}.safetensors.index.{v}.json"));
        }
        names.push(format!("{component}/{base}.safetensors"));
        names.push(format!("{component}/{base}.safetensors.index.json"));
        names.push(format!("{component}/{base}.fp16.safetensors"));
        for name in names {
            if let Some(path) = fetch(&name) {
                if name.ends_with(".json") {
                    fetch_shards(&path, component, &fetch)?;
                }
                break;
            }
        }
    }
    index
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| CoreError::file(&index, "has no parent folder"))
}

#[cfg(feature = "hub")]
fn fetch_shards(
    index: &std::path::Path,
    component: &str,
    fetch: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<()> {
    let value: serde_json::Value = crate::models::config::read_json(index)?;
    let mut shards: Vec<String> = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    shards.sort();
    shards.dedup();
    for shard in shards {
        let name = format!("{component}/{shard}");
        if fetch(&name).is_none() {
            return Err(CoreError::NotAvailable(format!(
                "shard {name} is neither cached nor downloadable"
            )));
        }
    }
    Ok(())
}

#[cfg(not(feature = "hub"))]
pub fn resolve(id: &str, _variant: Option<&str>, _options: &HubOptions) -> Result<PathBuf> {
    let _ = CONFIG_FILES;
    Err(CoreError::NotAvailable(format!(
        "`{id}` is not a local folder, and this build has no Hugging Face hub support (build with `--features hub`)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_org_slash_name() {
        assert!(looks_like_hub_id("stabilityai/sd-turbo"));
        assert!(looks_like_hub_id("runwayml/stable-diffusion-v1-5"));
        assert!(!looks_like_hub_id("./models/sd"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("noslash"));
    }
}
