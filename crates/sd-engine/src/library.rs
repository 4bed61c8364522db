//! The model library: which models a worker may load by name. It owns the scan of `--models-dir` folders
//! (diffusers folders and `.safetensors` single files, directly under a folder or one level down, as in
//! A1111's `models/Stable-diffusion`), the stable names (file or folder name without extension), how a
//! request's name resolves (A1111 also says `name.safetensors`, `name [hash]` or a hash), the cache of
//! weight hashes (computed in the background, keyed by file size and mtime), and the factory that turns a
//! model into a [`Loader`] for the model thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use sd_core::pipeline::ModelInfo;

use crate::backend::Loader;
use crate::metadata::{self, ModelHash};

/// How a library model is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// A folder with `model_index.json`.
    Diffusers,
    /// One `.safetensors` checkpoint in the original (LDM) layout.
    SingleFile,
    /// A `--model` given as a path or hub id outside the library folders.
    Reference,
}

impl ModelFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Diffusers => "diffusers",
            Self::SingleFile => "single_file",
            Self::Reference => "reference",
        }
    }
}

/// One model the library knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryModel {
    /// The stable name requests use: the file or folder name without extension.
    pub name: String,
    /// Path (or hub id, for a [`ModelFormat::Reference`]) the loader is given.
    pub path: String,
    pub format: ModelFormat,
    /// `sd1`, `sd2` or `sdxl` when the scan could tell from configs or tensor shapes.
    pub family: Option<String>,
}

/// What a scan found, and what it skipped with a reason.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by name; names are unique.
    pub models: Vec<LibraryModel>,
    pub warnings: Vec<String>,
}

/// Checkpoint extensions that are Python pickles: listed in the warnings, never loaded.
const PICKLES: [&str; 5] = ["ckpt", "pt", "pth", "bin", "pkl"];

/// Scans `dirs` in order: every diffusers folder and `.safetensors` file directly in a folder, or in one of
/// its subfolders. The first model of a name wins; later ones are skipped with a warning.
pub fn scan(dirs: &[PathBuf]) -> Scan {
    let mut scan = Scan::default();
    let mut found: Vec<LibraryModel> = Vec::new();
    for dir in dirs {
        match sorted_entries(dir) {
            Ok(entries) => {
                for entry in entries {
                    visit(&entry, true, &mut found, &mut scan.warnings);
                }
            }
            Err(error) => scan
                .warnings
                .push(format!("cannot read models dir {}: {error}", dir.display())),
        }
    }
    for model in found {
        if let Some(first) = scan.models.iter().find(|known| known.name == model.name) {
            scan.warnings.push(format!(
                "model `{}` at {} is shadowed by {} (the first one found wins)",
                model.name, model.path, first.path
            ));
            continue;
        }
        scan.models.push(model);
    }
    scan.models.sort_by(|a, b| a.name.cmp(&b.name));
    scan
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn visit(path: &Path, descend: bool, found: &mut Vec<LibraryModel>, warnings: &mut Vec<String>) {
    let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
        return;
    };
    if file_name.starts_with('.') {
        return;
    }
    if path.is_dir() {
        if path.join("model_index.json").is_file() {
            found.push(LibraryModel {
                name: file_name.to_owned(),
                path: path.display().to_string(),
                format: ModelFormat::Diffusers,
                family: folder_family(path),
            });
        } else if descend {
            match sorted_entries(path) {
                Ok(entries) => {
                    for entry in entries {
                        visit(&entry, false, found, warnings);
                    }
                }
                Err(error) => warnings.push(format!("cannot read {}: {error}", path.display())),
            }
        }
        return;
    }
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let stem = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(file_name);
    if extension == "safetensors" {
        found.push(LibraryModel {
            name: stem.to_owned(),
            path: path.display().to_string(),
            format: ModelFormat::SingleFile,
            family: file_family(path),
        });
    } else if PICKLES.contains(&extension.as_str()) {
        warnings.push(format!(
            "skipping {}: a PyTorch pickle can run code when loaded; convert it to .safetensors",
            path.display()
        ));
    }
}

/// The family of a diffusers folder from its configs, as the loader decides it: SDXL's UNet takes the
/// `text_time` embedding; SD 2.x's OpenCLIP text encoder uses exact GELU, SD 1.x's CLIP quick GELU.
fn folder_family(path: &Path) -> Option<String> {
    let read = |component: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(path.join(component).join("config.json")).ok()?;
        serde_json::from_str(&text).ok()
    };
    let unet = read("unet")?;
    if unet
        .get("addition_embed_type")
        .is_some_and(|kind| kind == "text_time")
    {
        return Some("sdxl".to_owned());
    }
    let text = read("text_encoder")?;
    let family = match text.get("hidden_act").and_then(|act| act.as_str()) {
        Some("gelu") => "sd2",
        _ => "sd1",
    };
    Some(family.to_owned())
}

/// The family of a single file from its tensors (header only); `None` when it cannot be told.
fn file_family(path: &Path) -> Option<String> {
    sd_core::loader::single_file::Checkpoint::open(path, None)
        .ok()
        .map(|checkpoint| checkpoint.family.name().to_owned())
}

/// Builds the loader of one library model (called on the model thread's behalf each time it loads); the
/// hash is passed when the library already knows it, so the loader need not hash the weights again.
pub type LoaderFactory = Arc<dyn Fn(&LibraryModel, Option<ModelHash>) -> Loader + Send + Sync>;

/// A file's identity for the hash cache: a changed size or mtime means hash again.
type Stamp = (u64, Option<SystemTime>);

/// The library a worker serves from: the scanned folders, models given outside them, the hash cache, and
/// the factory of loaders. Shared by the engine (model thread and request handlers).
pub struct ModelLibrary {
    dirs: Vec<PathBuf>,
    factory: LoaderFactory,
    /// `--model` references outside the folders: listed first by their own name, kept across rescans.
    extra: RwLock<Vec<LibraryModel>>,
    models: RwLock<Vec<LibraryModel>>,
    hashes: Mutex<HashMap<String, (Stamp, ModelHash)>>,
    /// What each model looked like when last loaded (for validating requests that name it).
    infos: Mutex<HashMap<String, Arc<ModelInfo>>>,
    /// One background hasher at a time; a rescan's hasher waits for the previous one.
    hashing: Arc<Mutex<()>>,
}

impl ModelLibrary {
    /// A library over `dirs` (scanned now; hashes are computed in the background).
    pub fn new(dirs: Vec<PathBuf>, factory: LoaderFactory) -> Arc<Self> {
        let library = Arc::new(Self {
            dirs,
            factory,
            extra: RwLock::default(),
            models: RwLock::default(),
            hashes: Mutex::default(),
            infos: Mutex::default(),
            hashing: Arc::default(),
        });
        library.rescan();
        library
    }

    /// Adds a model given by path or hub id outside the folders (e.g. `--model ./x`), named as A1111 names
    /// it; returns its name.
    pub fn add_reference(&self, reference: &str) -> String {
        let name = metadata::model_name(reference);
        let path = Path::new(reference);
        let format = if path.join("model_index.json").is_file() {
            ModelFormat::Diffusers
        } else if path.is_file() {
            ModelFormat::SingleFile
        } else {
            ModelFormat::Reference
        };
        let family = match format {
            ModelFormat::Diffusers => folder_family(path),
            ModelFormat::SingleFile => file_family(path),
            ModelFormat::Reference => None,
        };
        let mut extra = self.extra.write().unwrap_or_else(PoisonError::into_inner);
        extra.retain(|model| model.name != name);
        extra.push(LibraryModel {
            name: name.clone(),
            path: reference.to_owned(),
            format,
            family,
        });
        name
    }

    /// Scans the folders again (models added or removed since), then hashes new files in the background.
    /// Returns the warnings of the scan.
    pub fn rescan(self: &Arc<Self>) -> Vec<String> {
        let scan = scan(&self.dirs);
        for warning in &scan.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!(models = scan.models.len(), "model library scanned");
        *self.models.write().unwrap_or_else(PoisonError::into_inner) = scan.models;
        let library = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("sd-library-hash".into())
            .spawn(move || library.hash_all());
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the model hasher; hashes stay unknown");
        }
        scan.warnings
    }

    /// Every model: the `--model` references first, then the folders' models by name; a folder model with a
    /// reference's name is left out.
    pub fn models(&self) -> Vec<LibraryModel> {
        let mut all = self
            .extra
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let scanned = self.models.read().unwrap_or_else(PoisonError::into_inner);
        for model in scanned.iter() {
            if !all.iter().any(|known| known.name == model.name) {
                all.push(model.clone());
            }
        }
        all
    }

    pub fn names(&self) -> Vec<String> {
        self.models().into_iter().map(|model| model.name).collect()
    }

    pub fn get(&self, name: &str) -> Option<LibraryModel> {
        self.models().into_iter().find(|model| model.name == name)
    }

    /// The model `reference` names, in any form A1111 accepts: the name, the file name (`name.safetensors`),
    /// the title `name [shorthash]` (or `file [shorthash]`), the path, or the short/full/legacy hash.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        let models = self.models();
        let reference = reference.trim();
        if let Some(model) = models.iter().find(|model| model.name == reference) {
            return Some(model.name.clone());
        }
        // `title [hash]`: the title part decides; the hash only disambiguates nothing here.
        let base = match reference.rsplit_once(" [") {
            Some((title, hash)) if hash.ends_with(']') => title.trim(),
            _ => reference,
        };
        let stem = [".safetensors", ".ckpt"]
            .iter()
            .find_map(|ext| base.strip_suffix(ext))
            .unwrap_or(base);
        let file_name = |model: &LibraryModel| {
            Path::new(&model.path)
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
        };
        if let Some(model) = models.iter().find(|model| {
            model.name == stem
                || model.path == base
                || file_name(model).as_deref() == Some(base)
                || subfolder_name(model).as_deref() == Some(stem)
        }) {
            return Some(model.name.clone());
        }
        let lower = base.to_ascii_lowercase();
        models
            .iter()
            .find(|model| {
                self.hash(&model.name).is_some_and(|hash| {
                    hash.short() == lower
                        || hash.sha256 == lower
                        || hash.legacy.as_deref() == Some(lower.as_str())
                })
            })
            .map(|model| model.name.clone())
    }

    /// The model's hash once known (the background hasher or a load computed it).
    pub fn hash(&self, name: &str) -> Option<ModelHash> {
        let model = self.get(name)?;
        let stamp = stamp(&model)?;
        let hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
        hashes
            .get(&model.path)
            .filter(|(known, _)| *known == stamp)
            .map(|(_, hash)| hash.clone())
    }

    /// Remembers a hash a load computed.
    pub fn set_hash(&self, name: &str, hash: ModelHash) {
        let Some(model) = self.get(name) else {
            return;
        };
        if let Some(stamp) = stamp(&model) {
            self.hashes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(model.path, (stamp, hash));
        }
    }

    /// What the model looked like when it last loaded.
    pub fn info(&self, name: &str) -> Option<Arc<ModelInfo>> {
        self.infos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub(crate) fn set_info(&self, name: &str, info: Arc<ModelInfo>) {
        self.infos
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), info);
    }

    /// A loader for `name`; `None` when the library has no such model (any more).
    pub fn loader(&self, name: &str) -> Option<Loader> {
        let model = self.get(name)?;
        let hash = self.hash(name);
        Some((self.factory)(&model, hash))
    }

    /// Hashes every model whose hash is not cached yet, one after another (big files: minutes, never on a
    /// request's path).
    fn hash_all(&self) {
        let _one_at_a_time = self.hashing.lock().unwrap_or_else(PoisonError::into_inner);
        for model in self.models() {
            if model.format == ModelFormat::Reference || self.hash(&model.name).is_some() {
                continue;
            }
            let hub = sd_core::loader::hub::HubOptions {
                offline: true,
                ..Default::default()
            };
            if let Some(hash) = metadata::hash_model(&model.path, None, &hub) {
                self.set_hash(&model.name, hash);
            }
        }
    }
}

/// For a model in a subfolder, `sub/name` as A1111 titles it.
fn subfolder_name(model: &LibraryModel) -> Option<String> {
    let path = Path::new(&model.path);
    let parent = path.parent()?.file_name()?.to_str()?;
    Some(format!("{parent}/{}", model.name))
}

/// Size and mtime of what the hash covers: the file, or a folder's UNet weights.
fn stamp(model: &LibraryModel) -> Option<Stamp> {
    let files = match model.format {
        ModelFormat::SingleFile => vec![PathBuf::from(&model.path)],
        ModelFormat::Diffusers => {
            let hub = sd_core::loader::hub::HubOptions {
                offline: true,
                ..Default::default()
            };
            metadata::hash::unet_weight_files(&model.path, None, &hub).ok()?
        }
        ModelFormat::Reference => return None,
    };
    let mut size = 0;
    let mut newest = None;
    for file in files {
        let meta = std::fs::metadata(file).ok()?;
        size += meta.len();
        newest = newest.max(meta.modified().ok());
    }
    Some((size, newest))
}

#[cfg(test)]
#[path = "library_tests.rs"]
mod tests;
