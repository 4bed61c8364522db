//! The [`Engine`]'s model library side: resolving the names requests give, the default model (which A1111's
//! `POST options` changes), the listing the models routes serve, and rescans. A single-model engine (no
//! library) answers every name with its one model, as it always did.

use std::sync::Arc;

use sd_core::pipeline::ModelInfo;

use crate::engine::{Engine, Readiness};
use crate::library::{LibraryModel, ModelLibrary};
use crate::metadata::ModelHash;

/// A name that matches no model; lists the names that exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown model `{name}`; available models: {}", .available.join(", "))]
pub struct UnknownModel {
    pub name: String,
    pub available: Vec<String>,
}

/// One model as the listings show it.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub model: LibraryModel,
    /// `None` until the background hasher (or a load) has hashed the weights.
    pub hash: Option<ModelHash>,
    pub loaded: bool,
    /// Jobs that name no model run on it.
    pub default: bool,
}

impl Engine {
    pub fn library(&self) -> Option<&Arc<ModelLibrary>> {
        self.shared.library.as_ref()
    }

    /// The library name of the model jobs that name none run on (empty until the first model loaded).
    pub fn default_model(&self) -> String {
        self.shared.lock().default_model.clone()
    }

    /// The library name `name` refers to (see [`ModelLibrary::resolve`]). Without a library every name
    /// means the one model.
    pub fn resolve_model(&self, name: &str) -> Result<String, UnknownModel> {
        let Some(library) = &self.shared.library else {
            return Ok(self.default_model());
        };
        library.resolve(name).ok_or_else(|| UnknownModel {
            name: name.to_owned(),
            available: library.names(),
        })
    }

    /// Makes `name` the default model for later jobs that name none; returns its library name.
    pub fn set_default_model(&self, name: &str) -> Result<String, UnknownModel> {
        let resolved = self.resolve_model(name)?;
        self.shared.lock().default_model = resolved.clone();
        tracing::info!(model = %resolved, "default model changed");
        Ok(resolved)
    }

    /// Names requests may use; empty without a library.
    pub fn model_names(&self) -> Vec<String> {
        self.shared
            .library
            .as_ref()
            .map_or_else(Vec::new, |library| library.names())
    }

    /// What a request naming `name` is validated against: the model as it was when last loaded, else (never
    /// loaded yet) the first model's description with this model's name and family, since loading it just to
    /// validate would stall the queue. The core checks the request again when it runs.
    pub fn model_info_named(&self, name: &str) -> Option<Arc<ModelInfo>> {
        let first = match &*self.shared.readiness.borrow() {
            Readiness::Ready(info) => Arc::clone(info),
            _ => return None,
        };
        let Some(library) = &self.shared.library else {
            return Some(first);
        };
        let name = library.resolve(name)?;
        if let Some(info) = library.info(&name) {
            return Some(info);
        }
        let model = library.get(&name)?;
        let mut info = (*first).clone();
        info.model = model.path.clone();
        if let Some(family) = model
            .family
            .and_then(|family| sd_core::models::Family::parse(&family).ok())
            .filter(|family| *family != first.family)
        {
            let side = if family == sd_core::models::Family::Sdxl {
                1024
            } else {
                512
            };
            info.default_width = side;
            info.default_height = side;
            info.family = family;
        }
        Some(Arc::new(info))
    }

    /// Every model with its hash and whether it is loaded; without a library, the one model.
    pub fn models(&self) -> Vec<ModelEntry> {
        let (default, loaded) = {
            let state = self.shared.lock();
            (state.default_model.clone(), state.loaded.clone())
        };
        match &self.shared.library {
            Some(library) => library
                .models()
                .into_iter()
                .map(|mut model| {
                    // What the loader found beats what the scan guessed.
                    if let Some(info) = library.info(&model.name) {
                        model.family = Some(info.family.to_string());
                    }
                    model
                })
                .map(|model| ModelEntry {
                    hash: library.hash(&model.name),
                    loaded: loaded.contains(&model.name),
                    default: model.name == default,
                    model,
                })
                .collect(),
            None => self
                .model_info()
                .map(|info| ModelEntry {
                    model: LibraryModel {
                        name: default.clone(),
                        path: info.model.clone(),
                        format: crate::library::ModelFormat::Reference,
                        family: Some(info.family.to_string()),
                    },
                    hash: self.model_hash(),
                    loaded: true,
                    default: true,
                })
                .into_iter()
                .collect(),
        }
    }

    /// Scans the library folders again; returns the scan's warnings (none without a library).
    pub fn refresh_models(&self) -> Vec<String> {
        self.shared
            .library
            .as_ref()
            .map_or_else(Vec::new, |library| library.rescan())
    }
}
