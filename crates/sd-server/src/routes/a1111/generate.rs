//! `POST /sdapi/v1/txt2img` and `POST /sdapi/v1/img2img`: run the request as engine jobs (one per batch) and
//! answer `{images, parameters, info}` with `info` the JSON string A1111 returns. Each image carries its
//! infotext, which is also `info.infotexts[i]`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use sd_core::pipeline::ModelInfo;
use sd_engine::metadata::{self, GenerationParams, ModelHash};
use serde_json::{json, Map, Value};

use super::fields::Body;
use super::request::{self, Mode, Plan};
use super::{inpaint, probes};
use super::{A1111Error, A1111State};
use crate::error::ApiError;
use crate::extract::{parse_json, JsonBody};
use crate::state::AppState;
use crate::sync_run::{self as run, Produced, RunEvent};

/// A1111: text to image.
#[utoipa::path(post, path = "/sdapi/v1/txt2img", tag = "a1111",
    request_body(content = Object, description = "A1111's txt2img request (see COMPAT.md for the fields \
        that are used, ignored or refused)"),
    responses(
        (status = 200, description = "`{images: [base64 PNG], parameters: {...}, info: \"<JSON string>\"}`", body = Object),
        (status = 422, description = "A field is invalid or unsupported (`error.field` names it)", body = Object),
        (status = 401, description = "Missing or wrong API key (Bearer, or HTTP Basic password)", body = Object),
        (status = 429, description = "Queue full", body = Object),
    ))]
pub async fn txt2img(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
    JsonBody(body, _): JsonBody<Body, A1111Error>,
) -> Result<Response, A1111Error> {
    handle(app, state, body, Mode::Txt2Img).await
}

/// A1111: image to image and inpainting.
#[utoipa::path(post, path = "/sdapi/v1/img2img", tag = "a1111",
    request_body(content = Object, description = "A1111's img2img request: `init_images`, \
        `denoising_strength`, `resize_mode`, `mask`, `mask_blur`, `inpainting_fill`, `inpaint_full_res`, \
        `inpaint_full_res_padding`, `inpainting_mask_invert`, `include_init_images` and the txt2img fields"),
    responses(
        (status = 200, description = "`{images, parameters, info}`", body = Object),
        (status = 422, description = "A field is invalid or unsupported", body = Object),
    ))]
pub async fn img2img(
    State(app): State<AppState>,
    Extension(state): Extension<Arc<A1111State>>,
    JsonBody(body, _): JsonBody<Body, A1111Error>,
) -> Result<Response, A1111Error> {
    handle(app, state, body, Mode::Img2Img).await
}

/// A JSON object body, refused in A1111's shape (for routes that read the bytes themselves).
pub(super) fn parse_object(bytes: &[u8]) -> Result<Body, A1111Error> {
    parse_json(bytes).map_err(A1111Error::from)
}

async fn handle(
    app: AppState,
    state: Arc<A1111State>,
    body: Body,
    mode: Mode,
) -> Result<Response, A1111Error> {
    // A checkpoint the library has runs the job on it; one it lacks is refused, not silently ignored.
    let checkpoint = match body
        .get("override_settings")
        .and_then(|overrides| overrides.get("sd_model_checkpoint"))
        .and_then(Value::as_str)
    {
        Some(name) => probes::resolve_checkpoint(&app, name, "override_settings")
            .map_err(A1111Error::invalid)?,
        None => None,
    };
    let model = match &checkpoint {
        Some(name) => app.engine.model_info_named(name),
        None => app.engine.model_info(),
    }
    .ok_or_else(|| ApiError::not_ready(app.engine.readiness()))?;
    let options = state.options().clone();
    let limits = app.config.limits.clone();
    let plan = {
        let (body, model) = (body.clone(), Arc::clone(&model));
        // img2img decodes and resizes images: CPU work, kept off the async workers.
        app.cpu
            .run(move || request::plan(&body, mode, &model, &limits, &options))
            .await
            .map_err(|error| ApiError::Internal(format!("validation task failed: {error}")))?
            .map_err(A1111Error::invalid)?
    };

    let guard = state.begin(plan.n_iter);
    let task = Arc::clone(&guard.task);
    let outcome = run::run(
        &app.engine,
        checkpoint.as_deref(),
        &app.config.limits,
        plan.operation,
        plan.request.clone(),
        plan.batch_size,
        Arc::clone(&task.control),
        &mut |event| {
            let mut progress = task.progress();
            match event {
                RunEvent::Submitted { batch, batches, .. } => {
                    progress.job_no = batch;
                    progress.job_count = batches;
                    progress.step = 0;
                }
                RunEvent::Progress { step, total } => {
                    progress.step = step;
                    progress.steps = total;
                }
                RunEvent::Preview { .. } | RunEvent::Image { .. } => {}
            }
        },
    )
    .await?;
    // A1111 answers an `interrupt` with what finished; a job stopped by anything else (shutdown, a cancel on
    // the native API) must not pass as a success with no images, which clients index as `images[0]`.
    if outcome.interrupted && outcome.images.is_empty() && !task.control.is_interrupted() {
        return Err(A1111Error(
            if app.engine.occupancy().accepting {
                ApiError::Conflict {
                    code: "job_cancelled",
                    message: "the job was cancelled before it produced an image".into(),
                }
            } else {
                ApiError::ShuttingDown
            }
            .into(),
        ));
    }
    let timestamp = task.timestamp.clone();
    drop(guard);

    let hash = match &checkpoint {
        Some(name) => probes::model_hash_of(&app, name),
        None => app.engine.model_hash(),
    };
    let (images, infotexts) =
        finish_images(&app, outcome.images, &plan, &model, hash.as_ref()).await?;
    let info = info_json(&plan, &model, hash.as_ref(), &infotexts, &timestamp);
    let mut images: Vec<String> = if plan.send_images {
        images
            .iter()
            .map(|png| base64::engine::general_purpose::STANDARD.encode(png))
            .collect()
    } else {
        Vec::new()
    };
    if plan.send_images {
        images.extend(plan.init_images_out.iter().cloned());
    }
    let mut parameters = request::default_parameters(mode);
    parameters.extend(body);
    if mode == Mode::Img2Img {
        parameters.insert("init_images".into(), Value::Null);
        parameters.insert("mask".into(), Value::Null);
    }
    Ok(Json(json!({
        "images": images,
        "parameters": parameters,
        "info": info.to_string(),
    }))
    .into_response())
}

/// A1111 writes `extra_generation_params` values with Python's `str`.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(number) if number.is_f64() => {
            metadata::infotext::python_float(number.as_f64().unwrap_or_default())
        }
        other => other.to_string(),
    }
}

fn image_params(
    plan: &Plan,
    model: &ModelInfo,
    hash: Option<&ModelHash>,
    image: &Produced,
) -> GenerationParams {
    let mut params = metadata::generation_params(&plan.request, model, hash, 0);
    params.seed = image.seed;
    params.extra = plan
        .extra
        .iter()
        .map(|(key, value)| (key.clone(), python_str(value)))
        .collect();
    // The engine stamped the LoRAs the run applied into the image it made; carry them over.
    if let Some(hashes) = metadata::container::png_text(&image.png, "parameters").and_then(|text| {
        metadata::infotext::Infotext::parse(&text)
            .get("Lora hashes")
            .map(str::to_owned)
    }) {
        params.extra.push(("Lora hashes".into(), hashes));
    }
    params
}

/// The final PNGs (pasted back for "only masked", re-stamped when A1111 adds parameters) and their infotexts.
async fn finish_images(
    app: &AppState,
    images: Vec<Produced>,
    plan: &Plan,
    model: &ModelInfo,
    hash: Option<&ModelHash>,
) -> Result<(Vec<Vec<u8>>, Vec<String>), A1111Error> {
    let infotexts: Vec<String> = images
        .iter()
        .map(|image| {
            image_params(plan, model, hash, image)
                .to_infotext()
                .to_text()
        })
        .collect();
    let paste_back = plan.paste_back.clone();
    let restamp = !plan.extra.is_empty();
    let texts = infotexts.clone();
    let finished = app
        .cpu
        .run(move || {
            images
                .iter()
                .zip(&texts)
                .map(|(image, text)| match &paste_back {
                    Some(paste) => inpaint::paste_back(&image.png, paste, text),
                    None if restamp => metadata::replace_png_text(&image.png, "parameters", text)
                        .map_err(|error| error.to_string()),
                    None => Ok(image.png.to_vec()),
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|error| ApiError::Internal(format!("image task failed: {error}")))?
        .map_err(ApiError::Internal)?;
    Ok((finished, infotexts))
}

/// The object whose JSON text A1111 returns as `info` (its `Processed.js()`).
fn info_json(
    plan: &Plan,
    model: &ModelInfo,
    hash: Option<&ModelHash>,
    infotexts: &[String],
    timestamp: &str,
) -> Value {
    let request = &plan.request;
    let count = request.seeds.len();
    let subseeds: Vec<i64> = (0..count as i64)
        .map(|index| plan.subseed.wrapping_add(index))
        .collect();
    let extra: Map<String, Value> = plan.extra.iter().cloned().collect();
    json!({
        "prompt": request.prompt,
        "all_prompts": vec![&request.prompt; count],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": vec![&request.negative_prompt; count],
        "seed": request.seeds.first(),
        "all_seeds": request.seeds,
        "subseed": plan.subseed,
        "all_subseeds": subseeds,
        "subseed_strength": 0,
        "width": request.width,
        "height": request.height,
        "sampler_name": request::sampler_display(plan.sampler),
        "cfg_scale": request.guidance_scale,
        "steps": request.steps,
        "batch_size": plan.batch_size,
        "restore_faces": false,
        "face_restoration_model": null,
        "sd_model_name": metadata::model_name(&model.model),
        "sd_model_hash": hash.map(ModelHash::short),
        "sd_vae_name": null,
        "sd_vae_hash": null,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": plan.denoising_strength,
        "extra_generation_params": extra,
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": timestamp,
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": plan.is_using_inpainting_conditioning,
        "version": metadata::version(),
    })
}
