//! Image metadata compatible with AUTOMATIC1111: the `parameters` infotext ([`infotext`]), writing it into
//! PNG/JPEG/WebP files and reading it back ([`container`]), and the model's name and short hash ([`hash`]).
//!
//! The engine stamps every image it encodes, so every PNG the worker serves carries its settings.

pub mod container;
pub mod hash;
pub mod infotext;
pub mod lora_hash;

pub use container::{
    encode_image, encode_png, read_parameters, replace_png_text, ImageFormat, MetadataError,
};
pub use hash::{hash_model, model_name, ModelHash};
pub use infotext::{a1111_sampler_and_schedule, GenerationParams, Infotext};

use sd_core::pipeline::{GenerateRequest, ModelInfo};
use sd_core::schedulers::SamplerKind;

/// What we write as A1111's `Version` field.
pub fn version() -> String {
    format!("sd-worker v{}", env!("CARGO_PKG_VERSION"))
}

/// The infotext field saying the VAE decoded in tiles (written only then): tiled decoding blends seams, so the
/// same settings without it give a slightly different image.
pub fn vae_tiled_param() -> (String, String) {
    ("VAE tiled".to_owned(), "True".to_owned())
}

/// The sampler a request runs with: its own, else the model's default.
pub fn effective_sampler(request: &GenerateRequest, model: &ModelInfo) -> SamplerKind {
    request.sampler.unwrap_or(model.default_sampler)
}

/// The parameters of image `index` of `request` (whose seed is `seeds[index]`).
pub fn generation_params(
    request: &GenerateRequest,
    model: &ModelInfo,
    model_hash: Option<&ModelHash>,
    index: usize,
) -> GenerationParams {
    GenerationParams {
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone(),
        steps: request.steps,
        sampler: effective_sampler(request, model),
        cfg_scale: request.guidance_scale,
        seed: request.seeds.get(index).copied().unwrap_or_default(),
        width: request.width,
        height: request.height,
        model_hash: model_hash.map(|hash| hash.short().to_owned()),
        model_name: Some(model_name(&model.model)),
        denoising_strength: request.init.as_ref().map(|init| init.strength),
        clip_skip: request.clip_skip,
        extra: Vec::new(),
        version: Some(version()),
    }
}
