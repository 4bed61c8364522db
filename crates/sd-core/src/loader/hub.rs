//! Hub ids (`org/name`): resolved from the local Hugging Face cache, and downloaded when the binary has the
//! `hub` feature and the machine has a network. Offline and not cached, the error says so plainly; a download
//! that fails says why (401/403: a token is needed, 404: no such repo, or the network error). Downloads report
//! their progress to an optional observer (the CLI's bar, `serve`'s log and `/ready`).

use std::path::PathBuf;
use std::sync::Arc;

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
    /// Access token for gated or private repos; `None` = the token file in the cache folder, if any.
    pub token: Option<String>,
    /// The hub's base URL (a mirror, or a test server); `None` = hf-hub's (`https://huggingface.co`).
    pub endpoint: Option<String>,
    /// Told about download progress.
    pub progress: Option<DownloadObserver>,
}

/// One file's download progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The file, relative to the repo root.
    pub file: String,
    pub done: u64,
    pub total: u64,
}

impl DownloadProgress {
    /// 0..=100.
    pub fn percent(&self) -> u64 {
        (self.done.saturating_mul(100))
            .checked_div(self.total)
            .unwrap_or(100)
            .min(100)
    }
}

/// A callback told about download progress (called often: keep it cheap).
#[derive(Clone)]
pub struct DownloadObserver(pub Arc<dyn Fn(&DownloadProgress) + Send + Sync>);

impl std::fmt::Debug for DownloadObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DownloadObserver")
    }
}

/// Why a hub request failed, from hf-hub's error (whose HTTP status is only in its message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubFailure {
    /// 404: no such repo or file.
    NotFound,
    /// 401 or 403: a gated or private repo without (the right) token.
    Denied(u16),
    /// Another HTTP status.
    Status(u16),
    /// No answer: DNS, connection, TLS, timeout...
    Network(String),
}

impl HubFailure {
    /// Classifies an error message from hf-hub (`URL: status code 404`, or a transport error).
    pub fn from_message(message: &str) -> Self {
        let status = message
            .split("status code ")
            .nth(1)
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        match status {
            Some(404) => Self::NotFound,
            Some(code @ (401 | 403)) => Self::Denied(code),
            Some(code) => Self::Status(code),
            None => Self::Network(message.to_owned()),
        }
    }

    /// What the user should know, for `what` (a repo or file) at `endpoint`.
    pub fn describe(&self, what: &str, endpoint: &str) -> String {
        match self {
            Self::NotFound => format!("{what}: not found on {endpoint} (404): check the repo id"),
            Self::Denied(code) => format!(
                "{what}: access denied by {endpoint} ({code}): a gated or private repo needs a token with access \
                 (--hf-token or HF_TOKEN), and gated repos need their terms accepted on the website"
            ),
            Self::Status(code) => format!("{what}: {endpoint} answered HTTP {code}"),
            Self::Network(error) => format!("{what}: cannot reach {endpoint}: {error}"),
        }
    }
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
    let endpoint = options
        .endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
        .unwrap_or_else(|| "https://huggingface.co".to_owned());
    let api = if options.offline {
        None
    } else {
        let mut builder = match &options.cache_dir {
            Some(dir) => hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(dir.clone())),
            None => hf_hub::api::sync::ApiBuilder::from_env(),
        }
        .with_progress(false)
        .with_endpoint(endpoint.clone());
        if let Some(token) = &options.token {
            builder = builder.with_token(Some(token.clone()));
        }
        Some(
            builder
                .build()
                .map_err(|e| CoreError::NotAvailable(format!("cannot set up the hub client: {e}")))?
                .repo(repo),
        )
    };
    // Ok(None): not cached and (offline, or the repo has no such file); Err: the download failed.
    let fetch = |file: &str| -> Result<Option<PathBuf>> {
        if let Some(p) = cache.get(file) {
            return Ok(Some(p));
        }
        let Some(api) = api.as_ref() else {
            return Ok(None);
        };
        let reporter = Reporter {
            observer: options.progress.clone(),
            progress: DownloadProgress {
                file: file.to_owned(),
                done: 0,
                total: 0,
            },
        };
        match api.download_with_progress(file, reporter) {
            Ok(p) => Ok(Some(p)),
            Err(e) => match HubFailure::from_message(&e.to_string()) {
                HubFailure::NotFound => Ok(None),
                failure => Err(CoreError::NotAvailable(
                    failure.describe(&format!("{id}/{file}"), &endpoint),
                )),
            },
        }
    };
    let index = fetch("model_index.json")?.ok_or_else(|| {
        CoreError::NotAvailable(if api.is_some() {
            format!(
                "{}; or pass a local diffusers folder",
                HubFailure::NotFound.describe(&format!("{id} (model_index.json)"), &endpoint)
            )
        } else {
            format!(
                "`{id}` is not a local folder and is not in the Hugging Face cache ({}), and downloads are off \
                 (offline). Download it where there is a network (e.g. `huggingface-cli download {id}`) or pass a \
                 local diffusers folder",
                cache_root.path().display()
            )
        })
    })?;
    for file in CONFIG_FILES {
        fetch(file)?;
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
            if let Some(path) = fetch(&name)? {
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

/// Passes hf-hub's byte counts on to the observer.
#[cfg(feature = "hub")]
struct Reporter {
    observer: Option<DownloadObserver>,
    progress: DownloadProgress,
}

#[cfg(feature = "hub")]
impl hf_hub::api::Progress for Reporter {
    fn init(&mut self, size: usize, _filename: &str) {
        self.progress.total = size as u64;
        self.progress.done = 0;
        self.report();
    }

    fn update(&mut self, size: usize) {
        self.progress.done = self.progress.done.saturating_add(size as u64);
        self.report();
    }

    fn finish(&mut self) {
        self.progress.done = self.progress.total;
        self.report();
    }
}

#[cfg(feature = "hub")]
impl Reporter {
    fn report(&self) {
        if let Some(observer) = &self.observer {
            (observer.0)(&self.progress);
        }
    }
}

#[cfg(feature = "hub")]
fn fetch_shards(
    index: &std::path::Path,
    component: &str,
    fetch: &dyn Fn(&str) -> Result<Option<PathBuf>>,
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
        if fetch(&name)?.is_none() {
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

    #[test]
    fn hub_failures_are_told_apart() {
        let url = "http://127.0.0.1:9/org/m/resolve/main/model_index.json";
        assert_eq!(
            HubFailure::from_message(&format!("request error: {url}: status code 404")),
            HubFailure::NotFound
        );
        assert_eq!(
            HubFailure::from_message(&format!("request error: {url}: status code 401")),
            HubFailure::Denied(401)
        );
        assert!(matches!(
            HubFailure::from_message("request error: http://x: Connection Failed: refused"),
            HubFailure::Network(_)
        ));
        assert!(HubFailure::Denied(401)
            .describe("org/m", "https://huggingface.co")
            .contains("HF_TOKEN"));
        let half = DownloadProgress {
            file: "f".into(),
            done: 5,
            total: 10,
        };
        assert_eq!(half.percent(), 50);
    }
}
