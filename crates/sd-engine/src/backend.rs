//! The one seam between jobs and tensors: the [`Backend`] trait the model thread drives, its implementation
//! for the real [`Pipeline`], and the [`Loader`] that builds a backend on the model thread itself (so a
//! backend never has to cross threads).

use image::RgbImage;
use sd_core::pipeline::{
    GenerateOutput, GenerateRequest, ModelInfo, Pipeline, StepControl, StepEvent,
};

use crate::metadata::ModelHash;

/// Progress after one denoising step, as the engine sees it. The preview is computed only when asked for,
/// because the engine rate-limits previews.
pub struct StepProgress<'a> {
    pub step: usize,
    pub total: usize,
    preview: &'a dyn Fn() -> sd_core::Result<RgbImage>,
}

impl<'a> StepProgress<'a> {
    pub fn new(
        step: usize,
        total: usize,
        preview: &'a dyn Fn() -> sd_core::Result<RgbImage>,
    ) -> Self {
        Self {
            step,
            total,
            preview,
        }
    }

    /// A small RGB preview of the first image at this step.
    pub fn preview(&self) -> sd_core::Result<RgbImage> {
        (self.preview)()
    }
}

/// A loaded model that runs one request at a time on the model thread.
pub trait Backend {
    fn info(&self) -> &ModelInfo;

    /// The weights' hash for image metadata (A1111's `Model hash`); computed once at load.
    fn model_hash(&self) -> Option<&ModelHash> {
        None
    }

    /// Runs one request. `on_step` is called after every step; returning [`StepControl::Stop`] must end the
    /// run with [`sd_core::CoreError::Cancelled`] before the next step.
    fn generate(
        &self,
        request: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepProgress<'_>) -> StepControl,
    ) -> sd_core::Result<GenerateOutput>;
}

/// Builds the backend. Runs on the model thread; an `Err` is the reason the model could not load.
pub type Loader = Box<dyn FnOnce() -> Result<Box<dyn Backend>, String> + Send>;

impl Backend for Pipeline {
    fn info(&self) -> &ModelInfo {
        Pipeline::info(self)
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepProgress<'_>) -> StepControl,
    ) -> sd_core::Result<GenerateOutput> {
        Pipeline::generate(self, request, &mut |event: &StepEvent<'_>| {
            let preview = || event.preview();
            on_step(&StepProgress::new(event.step, event.total, &preview))
        })
    }
}

/// The real pipeline with its weights' hash.
struct HashedPipeline {
    pipeline: Pipeline,
    hash: Option<ModelHash>,
}

impl Backend for HashedPipeline {
    fn info(&self) -> &ModelInfo {
        self.pipeline.info()
    }

    fn model_hash(&self) -> Option<&ModelHash> {
        self.hash.as_ref()
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_step: &mut dyn FnMut(&StepProgress<'_>) -> StepControl,
    ) -> sd_core::Result<GenerateOutput> {
        Backend::generate(&self.pipeline, request, on_step)
    }
}

/// A loader for the real inference core. The weights are hashed on a second thread while the model loads
/// (offline, so the two never download the same files; a model fetched by this load is hashed after it).
pub fn pipeline_loader(
    model: String,
    options: sd_core::pipeline::LoadOptions,
    loras: sd_core::adapters::LoraLibrary,
) -> Loader {
    pipeline_loader_hashed(model, options, loras, None)
}

/// [`pipeline_loader`] for a model whose hash is already known (the model library hashed it): the load
/// does not read the weights a second time.
pub fn pipeline_loader_hashed(
    model: String,
    options: sd_core::pipeline::LoadOptions,
    loras: sd_core::adapters::LoraLibrary,
    known: Option<ModelHash>,
) -> Loader {
    Box::new(move || {
        if let Some(hash) = known {
            let mut pipeline = Pipeline::load(&model, &options)
                .map_err(|error| format!("cannot load model {model}: {error}"))?;
            pipeline.set_lora_library(loras);
            let hash = Some(hash);
            return Ok(Box::new(HashedPipeline { pipeline, hash }) as Box<dyn Backend>);
        }
        let offline = sd_core::loader::hub::HubOptions {
            offline: true,
            ..options.hub.clone()
        };
        let hashing = {
            let (model, variant, hub) = (model.clone(), options.variant.clone(), offline.clone());
            std::thread::Builder::new()
                .name("sd-model-hash".into())
                .spawn(move || crate::metadata::hash_model(&model, variant.as_deref(), &hub))
        };
        let mut pipeline = Pipeline::load(&model, &options)
            .map_err(|error| format!("cannot load model {model}: {error}"))?;
        pipeline.set_lora_library(loras);
        let hash = hashing
            .ok()
            .and_then(|handle| handle.join().ok().flatten())
            .or_else(|| crate::metadata::hash_model(&model, options.variant.as_deref(), &offline));
        Ok(Box::new(HashedPipeline { pipeline, hash }) as Box<dyn Backend>)
    })
}
