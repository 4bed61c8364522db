//! The LoRA files a worker may use: every `.safetensors` file in the `--lora-dir` folders (a file's name
//! without the extension is its name; the first folder wins a name clash), read on demand and kept in a
//! small least-recently-used cache so a LoRA used by job after job is parsed once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::lora::LoraFile;
use crate::{CoreError, Result};

/// How many parsed LoRA files stay cached.
const CACHE_SIZE: usize = 8;

/// One LoRA on disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoraEntry {
    pub name: String,
    pub path: PathBuf,
}

type CacheSlot = (PathBuf, Option<SystemTime>, Arc<LoraFile>);

/// The `--lora-dir` folders and the cache of parsed files. Cheap to clone (the cache is shared).
#[derive(Clone, Default)]
pub struct LoraLibrary {
    dirs: Vec<PathBuf>,
    cache: Arc<Mutex<Vec<CacheSlot>>>,
}

impl std::fmt::Debug for LoraLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraLibrary")
            .field("dirs", &self.dirs)
            .finish()
    }
}

impl LoraLibrary {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            cache: Arc::default(),
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The LoRAs in the folders now, by name (folders are read on every call, so new files show up
    /// without a restart).
    pub fn list(&self) -> Vec<LoraEntry> {
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                tracing::warn!(dir = %dir.display(), "LoRA folder cannot be read");
                continue;
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_lora_file(p))
                .collect();
            paths.sort();
            for path in paths {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    found.entry(stem.to_string()).or_insert(path);
                }
            }
        }
        found
            .into_iter()
            .map(|(name, path)| LoraEntry { name, path })
            .collect()
    }

    /// The file of LoRA `name`, or an error listing the names that exist.
    pub fn find(&self, name: &str) -> Result<LoraEntry> {
        let all = self.list();
        if let Some(entry) = all.iter().find(|e| e.name == name) {
            return Ok(entry.clone());
        }
        Err(CoreError::InvalidInput(unknown_message(
            name,
            &all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            &self.dirs,
        )))
    }

    /// LoRA `name`, parsed (from the cache when the file has not changed).
    pub fn load(&self, name: &str) -> Result<Arc<LoraFile>> {
        let entry = self.find(name)?;
        let modified = std::fs::metadata(&entry.path)
            .and_then(|m| m.modified())
            .ok();
        if let Ok(mut cache) = self.cache.lock() {
            if let Some(i) = cache
                .iter()
                .position(|(p, m, _)| *p == entry.path && *m == modified)
            {
                let slot = cache.remove(i);
                let file = slot.2.clone();
                cache.push(slot);
                return Ok(file);
            }
        }
        let file = Arc::new(LoraFile::read(&entry.path)?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(p, _, _)| *p != entry.path);
            if cache.len() >= CACHE_SIZE {
                cache.remove(0);
            }
            cache.push((entry.path, modified, file.clone()));
        }
        Ok(file)
    }
}

/// "unknown LoRA `x`; available: a, b (from DIRS)" - shared with the HTTP layer's check at submission.
pub fn unknown_message(name: &str, available: &[&str], dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if dirs.is_empty() {
        return format!("unknown LoRA `{name}`: no LoRA folder is configured (start the worker with --lora-dir DIR)");
    }
    let available = if available.is_empty() {
        "none".to_string()
    } else {
        available.join(", ")
    };
    format!(
        "unknown LoRA `{name}`; available: {available} (from {})",
        dirs.join(", ")
    )
}

/// True when `path` looks like a LoRA file name this library would list.
pub fn is_lora_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("safetensors"))
}
