//! The A1111 routes clients call to discover a server: samplers, schedulers, models, options, flags, memory,
//! and the lists of add-ons (LoRAs, VAEs, upscalers, ...) that this worker does not have, answered empty.
//! `POST options` with `sd_model_checkpoint` changes the default model (with a model library; otherwise it
//! must name the loaded model) and remembers the other options that `GET options` reports (clip skip is
//! used); unknown keys are ignored with a warning, sizes are bounded.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sd_core::schedulers::SamplerKind;
use sd_engine::metadata::{self, Infotext};
use sd_engine::ModelEntry;
use serde_json::{json, Map, Value};

use super::generate::parse_object;
use super::{A1111Error, A1111State};
use crate::error::{ApiError, FieldError};
use crate::extract::JsonBody;
use crate::images::base64_bytes;
use crate::state::AppState;

/// A model as A1111 lists a checkpoint.
struct Checkpoint {
    title: String,
    model_name: String,
    hash: Option<String>,
    sha256: Option<String>,
    filename: String,
}

impl Checkpoint {
    fn of(entry: &ModelEntry) -> Self {
        let short = entry.hash.as_ref().map(|hash| hash.short().to_owned());
        // A1111 titles a checkpoint file by its name with the extension (`model.safetensors [hash]`).
        let titled = if entry.model.path.ends_with(".safetensors") {
            std::path::Path::new(&entry.model.path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(&entry.model.name)
                .to_owned()
        } else {
            entry.model.name.clone()
        };
        Self {
            title: match &short {
                Some(short) => format!("{titled} [{short}]"),
                None => titled,
            },
            model_name: entry.model.name.clone(),
            hash: short,
            sha256: entry.hash.as_ref().map(|hash| hash.sha256.clone()),
            filename: entry.model.path.clone(),
        }
    }

    /// The names A1111 accepts for a checkpoint: title, name, hashes.
    fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        let name = name
            .strip_suffix(".safetensors")
            .or_else(|| name.strip_suffix(".ckpt"))
            .unwrap_or(name);
        [
            Some(&self.title),
            Some(&self.model_name),
            Some(&self.filename),
            self.hash.as_ref(),
            self.sha256.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|known| known == name)
    }
}

/// The default model (what jobs that name none run on).
fn checkpoint(app: &AppState) -> Option<Checkpoint> {
    let models = app.engine.models();
    models
        .iter()
        .find(|entry| entry.default)
        .or(models.first())
        .map(Checkpoint::of)
}

/// The hash of library model `name`, once known.
pub(super) fn model_hash_of(app: &AppState, name: &str) -> Option<sd_engine::metadata::ModelHash> {
    app.engine
        .models()
        .into_iter()
        .find(|entry| entry.model.name == name)
        .and_then(|entry| entry.hash)
}

#[utoipa::path(get, path = "/sdapi/v1/sd-models", tag = "a1111", responses((status = 200, description = "Every model of the library (or the one model): `[{title, model_name, hash, sha256, filename, config}]`; `hash` is null until the background hasher has read the file", body = Object)))]
pub async fn sd_models(State(app): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = app
        .engine
        .models()
        .iter()
        .map(|entry| {
            let checkpoint = Checkpoint::of(entry);
            json!({
                "title": checkpoint.title,
                "model_name": checkpoint.model_name,
                "hash": checkpoint.hash,
                "sha256": checkpoint.sha256,
                "filename": checkpoint.filename,
                "config": null,
            })
        })
        .collect();
    Json(Value::Array(models))
}

/// `POST /sdapi/v1/refresh-checkpoints`: scans the `--models-dir` folders again (new and removed models).
#[utoipa::path(post, path = "/sdapi/v1/refresh-checkpoints", tag = "a1111", responses((status = 200, description = "`null`, once the folders are scanned again (hashes follow in the background)", body = Object)))]
pub async fn refresh_checkpoints(State(app): State<AppState>) -> Json<Value> {
    let engine = app.engine.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || engine.refresh_models()).await {
        tracing::warn!(%error, "the rescan of the model folders failed");
    }
    Json(Value::Null)
}

#[utoipa::path(get, path = "/sdapi/v1/samplers", tag = "a1111", responses((status = 200, description = "`[{name, aliases, options}]` with A1111's names", body = Object)))]
pub async fn samplers() -> Json<Value> {
    let samplers: Vec<Value> = SamplerKind::all()
        .iter()
        .filter(|kind| **kind != SamplerKind::DpmPp2MKarras)
        .map(|&kind| {
            let aliases: Vec<&str> = match kind {
                SamplerKind::EulerAncestral => vec!["k_euler_a", "k_euler_ancestral"],
                SamplerKind::Euler => vec!["k_euler"],
                SamplerKind::Heun => vec!["k_heun"],
                SamplerKind::DpmPp2M => vec!["k_dpmpp_2m"],
                SamplerKind::Lcm => vec!["k_lcm"],
                _ => vec![kind.name()],
            };
            // As in A1111 1.9+: "DPM++ 2M" with the Automatic schedule uses Karras.
            let options = if kind == SamplerKind::DpmPp2M {
                json!({"scheduler": "karras"})
            } else {
                json!({})
            };
            json!({"name": kind.a1111_name(), "aliases": aliases, "options": options})
        })
        .collect();
    Json(Value::Array(samplers))
}

#[utoipa::path(get, path = "/sdapi/v1/schedulers", tag = "a1111", responses((status = 200, description = "Automatic and Karras", body = Object)))]
pub async fn schedulers() -> Json<Value> {
    Json(json!([
        {"name": "automatic", "label": "Automatic", "aliases": null, "default_rho": -1.0, "need_inner_model": false},
        {"name": "karras", "label": "Karras", "aliases": null, "default_rho": 7.0, "need_inner_model": false},
    ]))
}

fn default_options(app: &AppState) -> Map<String, Value> {
    let checkpoint = checkpoint(app);
    let values = json!({
        "sd_model_checkpoint": checkpoint.as_ref().map(|c| c.title.clone()),
        "sd_checkpoint_hash": checkpoint.as_ref().and_then(|c| c.sha256.clone()),
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
        "samples_format": "png",
        "enable_pnginfo": true,
        "add_model_hash_to_info": true,
        "add_model_name_to_info": true,
        "add_version_to_infotext": true,
        "eta_noise_seed_delta": 0,
        "randn_source": "CPU",
        "img2img_background_color": "#ffffff",
        "inpainting_mask_weight": 1.0,
        "initial_noise_multiplier": 1.0,
        "sd_checkpoints_limit": 1,
        "live_previews_enable": true,
        "live_previews_image_format": "png",
        "show_progress_every_n_steps": 1,
        "sd_lora": "None",
        "forge_preset": null,
    });
    match values {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[utoipa::path(get, path = "/sdapi/v1/options", tag = "a1111", responses((status = 200, description = "`sd_model_checkpoint`, `CLIP_stop_at_last_layers`, ... and what clients set", body = Object)))]
pub async fn options(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
) -> Json<Value> {
    let mut options = default_options(&app);
    for (key, value) in state.options().iter() {
        if key != "sd_model_checkpoint" {
            options.insert(key.clone(), value.clone());
        }
    }
    Json(Value::Object(options))
}

/// `POST /sdapi/v1/options`: `sd_model_checkpoint` must name the loaded model (this worker serves one);
/// everything else is remembered and reported back; `CLIP_stop_at_last_layers` applies to later requests.
#[utoipa::path(post, path = "/sdapi/v1/options", tag = "a1111", responses((status = 200, description = "`null`; `sd_model_checkpoint` must name the loaded model (else 422)", body = Object)))]
pub async fn set_options(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, A1111Error> {
    let body = body.map_err(ApiError::from)?;
    if body.len() > MAX_OPTIONS_BODY {
        return Err(A1111Error(ApiError::PayloadTooLarge.into()));
    }
    let body = parse_object(&body)?;
    if let Some(name) = body.get("sd_model_checkpoint").and_then(Value::as_str) {
        match app.engine.set_default_model(name) {
            Some(Ok(_)) => {}
            Some(Err(unknown)) => {
                return Err(A1111Error::invalid(unknown_checkpoint(
                    &unknown,
                    "sd_model_checkpoint",
                )))
            }
            None => {
                check_checkpoint(&app, name, "sd_model_checkpoint").map_err(A1111Error::invalid)?
            }
        }
    }
    if let Some(clip_skip) =
        super::fields::int(&body, "CLIP_stop_at_last_layers").map_err(A1111Error::invalid)?
    {
        let max = app.config.limits.max_clip_skip;
        if !(1..=max).contains(&clip_skip) {
            return Err(A1111Error::invalid(FieldError::new(
                "invalid_clip_skip",
                "CLIP_stop_at_last_layers",
                format!("CLIP_stop_at_last_layers must be between 1 and {max}, got {clip_skip}"),
            )));
        }
    }
    // Only the options GET reports are kept, each bounded, so the store cannot grow with what clients send.
    let known = default_options(&app);
    let mut kept = Map::new();
    for (key, value) in body {
        if !known.contains_key(&key) {
            tracing::warn!(option = %key, "ignoring an A1111 option this worker does not know");
            continue;
        }
        if value.to_string().len() > MAX_OPTION_VALUE {
            return Err(A1111Error::invalid(FieldError::new(
                "invalid_option",
                &key,
                format!("the value of {key} is longer than {MAX_OPTION_VALUE} bytes"),
            )));
        }
        kept.insert(key, value);
    }
    state.options().extend(kept);
    Ok(Json(Value::Null))
}

/// `POST /sdapi/v1/options` bodies larger than this are refused (413): the known options are short values.
pub const MAX_OPTIONS_BODY: usize = 64 * 1024;
/// Longest accepted value of one option, as JSON text.
pub const MAX_OPTION_VALUE: usize = 4096;

/// The library model an A1111 checkpoint name (name, file name, title, hash) refers to: `Ok(None)` on a
/// single-model worker, where `name` must be the loaded model (see [`check_checkpoint`]).
pub(super) fn resolve_checkpoint(
    app: &AppState,
    name: &str,
    field: &str,
) -> Result<Option<String>, FieldError> {
    if app.engine.model_names().is_empty() {
        return check_checkpoint(app, name, field).map(|()| None);
    }
    app.engine
        .resolve_model(name)
        .map(Some)
        .map_err(|unknown| unknown_checkpoint(&unknown, field))
}

fn unknown_checkpoint(unknown: &sd_engine::UnknownModel, field: &str) -> FieldError {
    FieldError::new("unknown_model", field, unknown.to_string())
}

/// `Ok` when `name` is the loaded checkpoint (title, name, file or hash), else the refusal `POST options` and
/// `override_settings` both give.
pub(super) fn check_checkpoint(app: &AppState, name: &str, field: &str) -> Result<(), FieldError> {
    let loaded = checkpoint(app);
    if loaded
        .as_ref()
        .is_some_and(|checkpoint| checkpoint.answers_to(name))
    {
        return Ok(());
    }
    let serving = loaded.map_or_else(|| "no model yet".to_owned(), |c| c.title);
    Err(FieldError::new(
        "model_not_loaded",
        field,
        format!("model {name:?} is not available; this worker serves {serving}"),
    ))
}

#[utoipa::path(get, path = "/sdapi/v1/cmd-flags", tag = "a1111", responses((status = 200, description = "A few of A1111's flags", body = Object)))]
pub async fn cmd_flags(State(app): State<AppState>) -> Json<Value> {
    let info = app.engine.model_info();
    Json(json!({
        "api": true,
        "nowebui": true,
        "api_auth": null,
        "api_log": false,
        "ckpt": info.as_ref().map(|info| info.model.clone()),
        "device": info.as_ref().map(|info| info.device.clone()),
        "no_half": info
            .as_ref()
            .is_some_and(|info| info.dtype == sd_core::pipeline::DTypeSpec::F32),
        "lowvram": false,
        "medvram": false,
        "xformers": false,
        "listen": false,
        "share": false,
        "gradio_auth": null,
        "sd_worker": app.config.version,
    }))
}

/// Total and free RAM from /proc/meminfo where there is one.
fn ram() -> Value {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return json!({"error": "not available on this platform"});
    };
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(free)) => {
            json!({"free": free, "used": total - free.min(total), "total": total})
        }
        _ => json!({"error": "unreadable /proc/meminfo"}),
    }
}

#[utoipa::path(get, path = "/sdapi/v1/memory", tag = "a1111", responses((status = 200, description = "`{ram: {free, used, total}, cuda: {error}}`", body = Object)))]
pub async fn memory() -> Json<Value> {
    Json(json!({"ram": ram(), "cuda": {"error": "not reported by sd-worker"}}))
}

#[utoipa::path(get, path = "/sdapi/v1/embeddings", tag = "a1111", responses((status = 200, description = "The textual-inversion embeddings of `--embeddings-dir`: `{loaded: {NAME: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}}, skipped: {...}}` (empty while the model loads)", body = Object)))]
pub async fn embeddings(State(app): State<AppState>) -> Json<Value> {
    let listing = app
        .engine
        .model_info()
        .map(|model| model.embeddings.clone())
        .unwrap_or_default();
    Json(serde_json::to_value(&listing).unwrap_or_else(|_| json!({"loaded": {}, "skipped": {}})))
}

#[utoipa::path(get, path = "/sdapi/v1/scripts", tag = "a1111", responses((status = 200, description = "`{txt2img: [], img2img: []}`", body = Object)))]
pub async fn scripts() -> Json<Value> {
    Json(json!({"txt2img": [], "img2img": []}))
}

#[utoipa::path(get, path = "/sdapi/v1/upscalers", tag = "a1111", responses((status = 200, description = "Only `None`", body = Object)))]
pub async fn upscalers() -> Json<Value> {
    Json(
        json!([{"name": "None", "model_name": null, "model_path": null, "model_url": null, "scale": 4.0}]),
    )
}

/// `GET` routes listing things this worker has none of: they answer `[]`.
pub const EMPTY_LISTS: [&str; 9] = [
    "/sdapi/v1/sd-vae",
    "/sdapi/v1/sd-modules",
    "/sdapi/v1/hypernetworks",
    "/sdapi/v1/face-restorers",
    "/sdapi/v1/realesrgan-models",
    "/sdapi/v1/prompt-styles",
    "/sdapi/v1/latent-upscale-modes",
    "/sdapi/v1/script-info",
    "/sdapi/v1/extensions",
];

/// `POST` refresh and reload requests with nothing to do (models load as jobs ask); they answer `null`.
pub const NO_OPS: [&str; 5] = [
    "/sdapi/v1/refresh-vae",
    "/sdapi/v1/refresh-loras",
    "/sdapi/v1/refresh-embeddings",
    "/sdapi/v1/reload-checkpoint",
    "/sdapi/v1/unload-checkpoint",
];

pub fn empty_lists() -> Router<AppState> {
    let empty = || async { Json(json!([])) };
    EMPTY_LISTS
        .into_iter()
        .fold(Router::new(), |router, path| router.route(path, get(empty)))
}

pub fn no_ops() -> Router<AppState> {
    let nothing = || async { Json(Value::Null) };
    NO_OPS.into_iter().fold(Router::new(), |router, path| {
        router.route(path, post(nothing))
    })
}

/// `POST /sdapi/v1/png-info`: the infotext of an image, raw and parsed as A1111 parses it.
#[utoipa::path(post, path = "/sdapi/v1/png-info", tag = "a1111", responses((status = 200, description = "`{info, items: {parameters}, parameters: {parsed fields}}` from `{image: base64}`", body = Object)))]
pub async fn png_info(
    State(app): State<AppState>,
    JsonBody(body, _): JsonBody<super::fields::Body, A1111Error>,
) -> Result<Json<Value>, A1111Error> {
    let encoded = super::fields::string(&body, "image")
        .map_err(A1111Error::invalid)?
        .unwrap_or_default();
    let encoded = encoded.trim();
    if encoded.is_empty() {
        return Err(A1111Error::invalid(FieldError::new(
            "missing_field",
            "image",
            "image is required",
        )));
    }
    let bytes = base64_bytes("image", encoded, &app.config.limits).map_err(A1111Error::invalid)?;
    let Some(text) = metadata::read_parameters(&bytes) else {
        return Ok(Json(json!({"info": "", "items": {}, "parameters": {}})));
    };
    let parsed = Infotext::parse(&text);
    let mut parameters = Map::new();
    parameters.insert("Prompt".into(), parsed.prompt.clone().into());
    parameters.insert(
        "Negative prompt".into(),
        parsed.negative_prompt.clone().into(),
    );
    for (key, value) in &parsed.params {
        match value.split_once('x').filter(|_| key == "Size") {
            Some((width, height)) => {
                parameters.insert(format!("{key}-1"), width.into());
                parameters.insert(format!("{key}-2"), height.into());
            }
            None => {
                parameters.insert(key.clone(), value.clone().into());
            }
        }
    }
    Ok(Json(json!({
        "info": text,
        "items": {"parameters": text},
        "parameters": parameters,
    })))
}
