//! `serve --models-dir`: builds the engine's [`ModelSet`] from the flags: the model library over the folders,
//! the loader factory (every library model loads with the shared device/dtype/LoRA/VAE-tiling settings; the
//! per-model overrides `--family`, `--prediction-type`, `--model-config`, `--vae` apply to `--model` only),
//! and what loads at start (`--model`, else the library's models by name until one loads).

use std::sync::Arc;

use anyhow::bail;
use sd_core::loader::hub::DownloadObserver;
use sd_engine::{LibraryModel, Loader, LoaderFactory, ModelLibrary, ModelSet};

use crate::cli::{LibraryArgs, ModelArgs};

pub(crate) fn model_set(
    model: &ModelArgs,
    library: &LibraryArgs,
    progress: DownloadObserver,
) -> anyhow::Result<ModelSet> {
    let max_loaded = usize::try_from(library.max_loaded_models).unwrap_or(1);
    if library.models_dirs.is_empty() {
        return Ok(ModelSet {
            library: None,
            initial: vec![(String::new(), crate::serve::loader(model, progress)?)],
            max_loaded,
            memory_budget: library.models_memory_budget,
        });
    }
    // Fail fast on bad shared settings (device, dtype, ...) rather than on every load.
    crate::model_options::load_options(model)?;
    let factory = factory(model.clone(), progress);
    let models = ModelLibrary::new(library.models_dirs.clone(), factory);
    let initial: Vec<(String, Loader)> = if model.model.is_empty() {
        let names = models.names();
        if names.is_empty() {
            bail!(
                "no models in --models-dir {}: put diffusers folders or .safetensors files there, or pass --model",
                library
                    .models_dirs
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        names
            .into_iter()
            .filter_map(|name| models.loader(&name).map(|loader| (name, loader)))
            .collect()
    } else {
        let name = match models.resolve(&model.model) {
            Some(name) => name,
            None => models.add_reference(&model.model),
        };
        match models.loader(&name) {
            Some(loader) => vec![(name, loader)],
            None => bail!("--model {} is not in the library", model.model),
        }
    };
    Ok(ModelSet {
        library: Some(models),
        initial,
        max_loaded,
        memory_budget: library.models_memory_budget,
    })
}

/// Loaders for library models: `--model`'s own flags for the `--model` reference, the shared ones for the
/// rest.
fn factory(model: ModelArgs, progress: DownloadObserver) -> LoaderFactory {
    Arc::new(move |entry: &LibraryModel, hash| {
        let mut args = model.clone();
        if entry.path != model.model {
            args.family = None;
            args.prediction_type = None;
            args.model_config = None;
            args.vae = None;
        }
        args.model = entry.path.clone();
        match crate::model_options::load_options(&args) {
            Ok(mut options) => {
                options.hub.progress = Some(progress.clone());
                sd_engine::pipeline_loader_hashed(
                    args.model.clone(),
                    options,
                    sd_core::adapters::LoraLibrary::new(args.lora_dir.clone()),
                    hash,
                )
            }
            Err(error) => {
                let reason = error.to_string();
                Box::new(move || Err(reason))
            }
        }
    })
}
