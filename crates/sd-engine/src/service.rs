//! [`JobService`]: what the HTTP layer needs from whatever runs its jobs. Two implementations: the in-process
//! [`Engine`] (one model thread) and the Redis Streams gateway in `sd-queue` (a fleet of workers). The methods
//! mirror [`Engine`]'s so that handlers read the same for both.

use std::sync::Arc;

use bytes::Bytes;
use sd_core::pipeline::ModelInfo;

use crate::engine::{
    CancelError, CancelOutcome, Engine, EngineConfig, ImageError, Occupancy, Readiness,
    SubmitError, Submitted,
};
use crate::engine_models::{ModelEntry, UnknownModel};
use crate::events::Subscription;
use crate::job::{JobRequest, JobSnapshot};
use crate::library::{LibraryModel, ModelFormat};
use crate::metadata::ModelHash;

pub trait JobService: Send + Sync + 'static {
    fn readiness(&self) -> Readiness;
    /// What loading is doing now (a download's progress; for a gateway, what it waits for), for `/ready`.
    fn loading_detail(&self) -> Option<String> {
        None
    }
    /// The model requests are validated against, once one is available.
    fn model_info(&self) -> Option<Arc<ModelInfo>>;
    fn model_hash(&self) -> Option<ModelHash>;
    fn config(&self) -> &EngineConfig;
    fn submit(&self, request: JobRequest) -> Result<Submitted, SubmitError>;
    /// The model a request naming `name` is validated against. A single-model service ignores the name
    /// (the field is a routing hint), a fleet gateway knows every model its workers registered.
    fn model_info_named(&self, _name: &str) -> Option<Arc<ModelInfo>> {
        self.model_info()
    }
    /// Models a request may name; empty when the service ignores names.
    fn model_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// [`Self::submit`] to the named model (`None`: the default one).
    fn submit_to(
        &self,
        _model: Option<&str>,
        request: JobRequest,
    ) -> Result<Submitted, SubmitError> {
        self.submit(request)
    }
    /// The library name `name` refers to; the default: a name `model_info_named` knows.
    fn resolve_model(&self, name: &str) -> Result<String, UnknownModel> {
        match self.model_info_named(name) {
            Some(_) => Ok(name.to_owned()),
            None => Err(UnknownModel {
                name: name.to_owned(),
                available: self.model_names(),
            }),
        }
    }
    /// Every model requests may name, for the listings; the default: the named models, else the one
    /// model.
    fn models(&self) -> Vec<ModelEntry> {
        let names = self.model_names();
        if names.is_empty() {
            return self
                .model_info()
                .map(|info| ModelEntry {
                    model: LibraryModel {
                        name: crate::metadata::model_name(&info.model),
                        path: info.model.clone(),
                        format: ModelFormat::Reference,
                        family: Some(info.family.to_string()),
                    },
                    hash: self.model_hash(),
                    loaded: true,
                    default: true,
                })
                .into_iter()
                .collect();
        }
        names
            .into_iter()
            .map(|name| ModelEntry {
                model: LibraryModel {
                    path: name.clone(),
                    family: self
                        .model_info_named(&name)
                        .map(|info| info.family.to_string()),
                    name,
                    format: ModelFormat::Reference,
                },
                hash: None,
                loaded: true,
                default: false,
            })
            .collect()
    }
    /// Makes `name` the default model of later jobs; `None` when this service cannot (a fleet gateway, a
    /// single-model worker).
    fn set_default_model(&self, _name: &str) -> Option<Result<String, UnknownModel>> {
        None
    }
    /// Scans the model folders again; returns the scan's warnings.
    fn refresh_models(&self) -> Vec<String> {
        Vec::new()
    }
    fn job(&self, id: &str) -> Option<JobSnapshot>;
    /// Up to `limit` jobs, newest first.
    fn jobs(&self, limit: usize) -> Vec<JobSnapshot>;
    /// The job's events so far and its live events; `None` for an unknown job.
    fn subscribe(&self, id: &str) -> Option<Subscription>;
    /// Whether `id` named a job whose result was dropped (expired): such a job answers 410, not 404.
    fn expired(&self, _id: &str) -> bool {
        false
    }
    fn image(&self, id: &str, index: usize) -> Result<Bytes, ImageError>;
    fn cancel(&self, id: &str) -> Result<CancelOutcome, CancelError>;
    fn occupancy(&self) -> Occupancy;
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
}

impl JobService for Engine {
    fn readiness(&self) -> Readiness {
        Engine::readiness(self)
    }
    fn loading_detail(&self) -> Option<String> {
        Engine::loading_detail(self)
    }
    fn model_info(&self) -> Option<Arc<ModelInfo>> {
        Engine::model_info(self)
    }
    fn model_hash(&self) -> Option<ModelHash> {
        Engine::model_hash(self)
    }
    fn config(&self) -> &EngineConfig {
        Engine::config(self)
    }
    fn submit(&self, request: JobRequest) -> Result<Submitted, SubmitError> {
        Engine::submit(self, request)
    }
    fn model_info_named(&self, name: &str) -> Option<Arc<ModelInfo>> {
        Engine::model_info_named(self, name)
    }
    fn model_names(&self) -> Vec<String> {
        Engine::model_names(self)
    }
    fn submit_to(
        &self,
        model: Option<&str>,
        request: JobRequest,
    ) -> Result<Submitted, SubmitError> {
        Engine::submit_to(self, model, request)
    }
    fn resolve_model(&self, name: &str) -> Result<String, UnknownModel> {
        Engine::resolve_model(self, name)
    }
    fn models(&self) -> Vec<ModelEntry> {
        Engine::models(self)
    }
    fn set_default_model(&self, name: &str) -> Option<Result<String, UnknownModel>> {
        self.library()
            .is_some()
            .then(|| Engine::set_default_model(self, name))
    }
    fn refresh_models(&self) -> Vec<String> {
        Engine::refresh_models(self)
    }
    fn job(&self, id: &str) -> Option<JobSnapshot> {
        Engine::job(self, id)
    }
    fn jobs(&self, limit: usize) -> Vec<JobSnapshot> {
        Engine::jobs(self, limit)
    }
    fn subscribe(&self, id: &str) -> Option<Subscription> {
        Engine::subscribe(self, id)
    }
    fn expired(&self, id: &str) -> bool {
        Engine::expired(self, id)
    }
    fn image(&self, id: &str, index: usize) -> Result<Bytes, ImageError> {
        Engine::image(self, id, index)
    }
    fn cancel(&self, id: &str) -> Result<CancelOutcome, CancelError> {
        Engine::cancel(self, id)
    }
    fn occupancy(&self) -> Occupancy {
        Engine::occupancy(self)
    }
    fn metrics(&self) -> String {
        Engine::metrics(self)
    }
}

/// Lets handlers pass `&app.engine` (an `Arc<dyn JobService>`) where `&dyn JobService` is expected.
impl JobService for Arc<dyn JobService> {
    fn readiness(&self) -> Readiness {
        self.as_ref().readiness()
    }
    fn loading_detail(&self) -> Option<String> {
        self.as_ref().loading_detail()
    }
    fn model_info(&self) -> Option<Arc<ModelInfo>> {
        self.as_ref().model_info()
    }
    fn model_hash(&self) -> Option<ModelHash> {
        self.as_ref().model_hash()
    }
    fn config(&self) -> &EngineConfig {
        self.as_ref().config()
    }
    fn submit(&self, request: JobRequest) -> Result<Submitted, SubmitError> {
        self.as_ref().submit(request)
    }
    fn model_info_named(&self, name: &str) -> Option<Arc<ModelInfo>> {
        self.as_ref().model_info_named(name)
    }
    fn model_names(&self) -> Vec<String> {
        self.as_ref().model_names()
    }
    fn submit_to(
        &self,
        model: Option<&str>,
        request: JobRequest,
    ) -> Result<Submitted, SubmitError> {
        self.as_ref().submit_to(model, request)
    }
    fn resolve_model(&self, name: &str) -> Result<String, UnknownModel> {
        self.as_ref().resolve_model(name)
    }
    fn models(&self) -> Vec<ModelEntry> {
        self.as_ref().models()
    }
    fn set_default_model(&self, name: &str) -> Option<Result<String, UnknownModel>> {
        self.as_ref().set_default_model(name)
    }
    fn refresh_models(&self) -> Vec<String> {
        self.as_ref().refresh_models()
    }
    fn job(&self, id: &str) -> Option<JobSnapshot> {
        self.as_ref().job(id)
    }
    fn jobs(&self, limit: usize) -> Vec<JobSnapshot> {
        self.as_ref().jobs(limit)
    }
    fn subscribe(&self, id: &str) -> Option<Subscription> {
        self.as_ref().subscribe(id)
    }
    fn expired(&self, id: &str) -> bool {
        self.as_ref().expired(id)
    }
    fn image(&self, id: &str, index: usize) -> Result<Bytes, ImageError> {
        self.as_ref().image(id, index)
    }
    fn cancel(&self, id: &str) -> Result<CancelOutcome, CancelError> {
        self.as_ref().cancel(id)
    }
    fn occupancy(&self) -> Occupancy {
        self.as_ref().occupancy()
    }
    fn metrics(&self) -> String {
        self.as_ref().metrics()
    }
}
