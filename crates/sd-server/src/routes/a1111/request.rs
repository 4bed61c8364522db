//! An A1111 `txt2img`/`img2img` body -> a validated engine request.
//!
//! A1111 defaults apply where the client is silent (Euler, 50 steps, CFG 7, denoising 0.75). Fields that only
//! tune A1111's samplers or its saving are accepted and ignored; fields that would change the picture in a way
//! we cannot reproduce are refused with a 422 naming the field (see [`refuse_unsupported`]).

use sd_core::pipeline::{GenerateRequest, ModelInfo};
use sd_core::schedulers::SamplerKind;
use sd_engine::metadata::a1111_sampler_and_schedule;
use sd_engine::Operation;
use serde_json::{Map, Value};

pub use super::defaults::default_parameters;
use super::fields::{self, Body};
use super::inpaint::{self, Prepared};
use crate::compat::{rename_field, validate_common, CommonFields};
use crate::error::FieldError;
use crate::validate::Limits;

/// At most this many images per request (batch_size x n_iter).
pub const MAX_IMAGES: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Txt2Img,
    Img2Img,
}

/// A request ready to run, and what the response reports about it.
pub struct Plan {
    pub operation: Operation,
    /// One seed per image, all batches together.
    pub request: GenerateRequest,
    pub sampler: SamplerKind,
    pub batch_size: usize,
    pub n_iter: usize,
    pub subseed: i64,
    pub denoising_strength: Option<f64>,
    pub send_images: bool,
    /// Base64 inputs to append to the output (`include_init_images`).
    pub init_images_out: Vec<String>,
    /// A1111's `extra_generation_params`, also written into each image's infotext.
    pub extra: Vec<(String, Value)>,
    /// "Only masked" inpainting: how to put each result back into the original picture.
    pub paste_back: Option<inpaint::PasteBack>,
    pub is_using_inpainting_conditioning: bool,
}

fn refuse(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new("unsupported_field", field, message)
}

/// Refuses fields that would change the image in ways this worker cannot reproduce.
pub fn refuse_unsupported(body: &Body, mode: Mode) -> Result<(), FieldError> {
    let on = |key: &str| -> Result<bool, FieldError> {
        Ok(fields::boolean(body, key)?.unwrap_or(false))
    };
    let positive = |key: &str| -> Result<bool, FieldError> {
        Ok(fields::float(body, key)?.is_some_and(|value| value > 0.0))
    };
    let non_empty = |key: &str| -> Result<bool, FieldError> {
        Ok(fields::string(body, key)?
            .is_some_and(|text| !text.trim().is_empty() && !text.eq_ignore_ascii_case("none")))
    };
    if mode == Mode::Txt2Img && on("enable_hr")? {
        return Err(refuse("enable_hr", "enable_hr (hires fix) is not supported; generate at the final size or upscale with img2img"));
    }
    if on("restore_faces")? {
        return Err(refuse("restore_faces", "restore_faces is not supported"));
    }
    if on("tiling")? {
        return Err(refuse("tiling", "tiling is not supported"));
    }
    if !fields::strings(body, "styles")?.is_empty() {
        return Err(refuse(
            "styles",
            "styles are not supported; put the style text in the prompt",
        ));
    }
    if positive("subseed_strength")? {
        return Err(refuse(
            "subseed_strength",
            "variation seeds (subseed_strength > 0) are not supported",
        ));
    }
    for key in ["seed_resize_from_w", "seed_resize_from_h"] {
        if fields::int(body, key)?.is_some_and(|value| value > 0) {
            return Err(refuse(key, format!("{key} is not supported")));
        }
    }
    if positive("s_min_uncond")? {
        return Err(refuse(
            "s_min_uncond",
            "s_min_uncond (NGMS) is not supported",
        ));
    }
    if positive("token_merging_ratio")? {
        return Err(refuse(
            "token_merging_ratio",
            "token merging is not supported",
        ));
    }
    for key in [
        "script_name",
        "refiner_checkpoint",
        "infotext",
        "firstpass_image",
        "latent_mask",
    ] {
        if non_empty(key)? {
            return Err(refuse(key, format!("{key} is not supported")));
        }
    }
    if let Some(scripts) = fields::object(body, "alwayson_scripts")? {
        if let Some(name) = scripts
            .iter()
            .find_map(|(name, script)| active_script(script).then_some(name))
        {
            return Err(refuse(
                "alwayson_scripts",
                format!("alwayson_scripts are not supported (got an active {name:?})"),
            ));
        }
    }
    if mode == Mode::Img2Img {
        if fields::float(body, "initial_noise_multiplier")?.is_some_and(|value| value != 1.0) {
            return Err(refuse(
                "initial_noise_multiplier",
                "initial_noise_multiplier other than 1 is not supported",
            ));
        }
        if let Some(fill @ (2 | 3)) = fields::int(body, "inpainting_fill")? {
            return Err(refuse(
                "inpainting_fill",
                format!("inpainting_fill {fill} (latent noise/nothing) is not supported; use 0 (fill) or 1 (original)"),
            ));
        }
    }
    if let Some(overrides) = fields::object(body, "override_settings")? {
        refuse_overrides(overrides)?;
    }
    Ok(())
}

/// An always-on script entry that would run: `args` present, non-empty, and not starting with `false`.
fn active_script(script: &Value) -> bool {
    match script.get("args") {
        Some(Value::Array(args)) => !args.is_empty() && args.first() != Some(&Value::Bool(false)),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

fn refuse_overrides(overrides: &Body) -> Result<(), FieldError> {
    let field = "override_settings";
    if let Some(vae) = fields::string(overrides, "sd_vae")? {
        if !["", "automatic", "none"].contains(&vae.trim().to_ascii_lowercase().as_str()) {
            return Err(refuse(
                field,
                format!("sd_vae {vae:?} is not supported; this worker uses the model's own VAE"),
            ));
        }
    }
    if fields::int(overrides, "eta_noise_seed_delta")?.is_some_and(|value| value != 0) {
        return Err(refuse(field, "eta_noise_seed_delta is not supported"));
    }
    Ok(())
}

/// A1111's `sampler_name` (or the older `sampler_index`) and `scheduler`. Like A1111 1.9+, "DPM++ 2M" with the
/// Automatic schedule uses Karras sigmas.
pub fn sampler(body: &Body) -> Result<SamplerKind, FieldError> {
    let name = match fields::string(body, "sampler_name")? {
        Some(name) if !name.trim().is_empty() => name,
        _ => fields::string(body, "sampler_index")?
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| "Euler".to_owned()),
    };
    let kind = SamplerKind::parse(&name)
        .map_err(|error| FieldError::new("unknown_sampler", "sampler_name", error.to_string()))?;
    let schedule = fields::string(body, "scheduler")?.unwrap_or_default();
    let automatic = schedule.trim().is_empty() || schedule.trim().eq_ignore_ascii_case("automatic");
    if kind == SamplerKind::DpmPp2M && automatic {
        return Ok(SamplerKind::DpmPp2MKarras);
    }
    kind.with_schedule(&schedule)
        .map_err(|error| FieldError::new("unknown_scheduler", "scheduler", error.to_string()))
}

/// Clip skip from `override_settings`, else the options set through `POST /sdapi/v1/options`.
fn clip_skip(body: &Body, options: &Map<String, Value>) -> Result<Option<i64>, FieldError> {
    let key = "CLIP_stop_at_last_layers";
    if let Some(overrides) = fields::object(body, "override_settings")? {
        if let Some(value) = fields::int(overrides, key)? {
            return Ok(Some(value));
        }
    }
    fields::int(options, key)
}

fn count(body: &Body, key: &str) -> Result<usize, FieldError> {
    match fields::int(body, key)?.unwrap_or(1) {
        value @ 1.. => Ok(value as usize),
        value => Err(FieldError::new(
            "invalid_count",
            key,
            format!("{key} must be at least 1, got {value}"),
        )),
    }
}

/// Reads and validates the whole body (decoding images for img2img; call off the async workers).
pub fn plan(
    body: &Body,
    mode: Mode,
    model: &ModelInfo,
    limits: &Limits,
    options: &Map<String, Value>,
) -> Result<Plan, FieldError> {
    refuse_unsupported(body, mode)?;
    let sampler = sampler(body)?;
    let batch_size = count(body, "batch_size")?;
    let n_iter = count(body, "n_iter")?;
    // Checked: 2^32 x 2^32 wraps to 0 in a release build, which would pass as "no images".
    let images = match batch_size.checked_mul(n_iter) {
        Some(images) if images <= MAX_IMAGES => images,
        product => {
            let images = product.map_or_else(
                || format!("{batch_size} x {n_iter} (too large to count)"),
                |images| images.to_string(),
            );
            return Err(FieldError::new(
                "invalid_count",
                "batch_size",
                format!(
                    "batch_size x n_iter = {images} exceeds {MAX_IMAGES} images; lower batch_size or n_iter"
                ),
            ));
        }
    };
    let fields_in = CommonFields {
        prompt: Some(fields::string(body, "prompt")?.unwrap_or_default()),
        negative_prompt: fields::string(body, "negative_prompt")?,
        steps: Some(fields::int(body, "steps")?.unwrap_or(50)),
        guidance_scale: Some(fields::float(body, "cfg_scale")?.unwrap_or(7.0)),
        seed: fields::seed(body, "seed")?,
        width: fields::int(body, "width")?,
        height: fields::int(body, "height")?,
        clip_skip: clip_skip(body, options)?,
        sampler: None,
    };
    let mut request = validate_common(fields_in, model, limits).map_err(|error| {
        let error = rename_field(error, "guidance_scale", "cfg_scale");
        rename_field(error, "clip_skip", "CLIP_stop_at_last_layers")
    })?;
    request.sampler = Some(sampler);
    let first = request.seeds.first().copied().unwrap_or_default();
    request.seeds = crate::compat::consecutive_seeds(first, images);
    let subseed = match fields::seed(body, "subseed")? {
        None | Some(-1) => i64::from(rand::random::<u32>()),
        Some(value) => i64::try_from(value).unwrap_or(-1),
    };
    let send_images = fields::boolean(body, "send_images")?.unwrap_or(true);
    let mut plan = Plan {
        operation: Operation::ImageGeneration,
        request,
        sampler,
        batch_size,
        n_iter,
        subseed,
        denoising_strength: fields::float(body, "denoising_strength")?,
        send_images,
        init_images_out: Vec::new(),
        extra: Vec::new(),
        paste_back: None,
        is_using_inpainting_conditioning: false,
    };
    if mode == Mode::Img2Img {
        let Prepared {
            operation,
            init,
            paste_back,
            extra,
            strength,
        } = inpaint::prepare(body, &plan.request, limits)?;
        plan.is_using_inpainting_conditioning = model.inpainting && init.mask.is_some();
        plan.operation = operation;
        plan.request.init = Some(init);
        plan.paste_back = paste_back;
        plan.extra = extra;
        plan.denoising_strength = Some(strength);
        if fields::boolean(body, "include_init_images")?.unwrap_or(false) {
            plan.init_images_out = fields::strings(body, "init_images")?;
        }
    }
    Ok(plan)
}

/// The sampler as A1111 reports it in `info.sampler_name`.
pub fn sampler_display(kind: SamplerKind) -> &'static str {
    a1111_sampler_and_schedule(kind).0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Body {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn samplers_and_schedules_map_like_a1111() {
        let pick = |value: Value| sampler(&body(value));
        assert_eq!(pick(json!({})).unwrap(), SamplerKind::Euler);
        assert_eq!(
            pick(json!({"sampler_index": "Euler a"})).unwrap(),
            SamplerKind::EulerAncestral
        );
        assert_eq!(
            pick(json!({"sampler_name": "DPM++ 2M", "scheduler": "Karras"})).unwrap(),
            SamplerKind::DpmPp2MKarras
        );
        assert_eq!(
            pick(json!({"sampler_name": "DPM++ 2M"})).unwrap(),
            SamplerKind::DpmPp2MKarras
        );
        assert_eq!(
            pick(json!({"sampler_name": "DPM++ 2M Karras"})).unwrap(),
            SamplerKind::DpmPp2MKarras
        );
        assert_eq!(
            pick(json!({"sampler_name": "Euler a", "scheduler": "Automatic"})).unwrap(),
            SamplerKind::EulerAncestral
        );
        assert_eq!(
            pick(json!({"sampler_name": "DPM++ SDE"}))
                .unwrap_err()
                .field
                .as_deref(),
            Some("sampler_name")
        );
        assert_eq!(
            pick(json!({"sampler_name": "Euler", "scheduler": "Karras"}))
                .unwrap_err()
                .field
                .as_deref(),
            Some("scheduler")
        );
        assert_eq!(
            pick(json!({"sampler_name": "Euler", "scheduler": "Exponential"}))
                .unwrap_err()
                .field
                .as_deref(),
            Some("scheduler")
        );
    }

    #[test]
    fn webuiapi_defaults_pass_and_image_changing_fields_are_refused() {
        let webuiapi = json!({
            "enable_hr": false, "denoising_strength": 0.7, "styles": [], "subseed": -1, "subseed_strength": 0.0,
            "seed_resize_from_h": 0, "seed_resize_from_w": 0, "restore_faces": false, "tiling": false,
            "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {},
            "script_name": null, "script_args": [], "alwayson_scripts": {}, "sampler_index": "Euler a",
        });
        refuse_unsupported(&body(webuiapi.clone()), Mode::Txt2Img).unwrap();
        for (key, value) in [
            ("enable_hr", json!(true)),
            ("restore_faces", json!(true)),
            ("tiling", json!(true)),
            ("styles", json!(["cinematic"])),
            ("subseed_strength", json!(0.3)),
            ("seed_resize_from_w", json!(256)),
            ("script_name", json!("x/y/z plot")),
            (
                "alwayson_scripts",
                json!({"ControlNet": {"args": [{"enabled": true}]}}),
            ),
            ("override_settings", json!({"sd_vae": "other.vae.pt"})),
        ] {
            let mut request = webuiapi.clone();
            request[key] = value;
            let error = refuse_unsupported(&body(request), Mode::Txt2Img).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(key), "{key}");
            assert_eq!(error.code, "unsupported_field");
        }
        let disabled = json!({"alwayson_scripts": {"ADetailer": {"args": [false]}, "ControlNet": {"args": []}}});
        refuse_unsupported(&body(disabled), Mode::Txt2Img).unwrap();
        let latent = json!({"inpainting_fill": 2});
        assert!(refuse_unsupported(&body(latent), Mode::Img2Img).is_err());
    }

    #[test]
    fn plans_txt2img_with_a1111_defaults() {
        let model = sd_engine::fake::FakeBackend::default_info();
        let options = Map::new();
        let plan = plan(
            &body(
                json!({"prompt": "a cat", "seed": 7, "batch_size": 2, "n_iter": 3,
                         "override_settings": {"CLIP_stop_at_last_layers": 2}}),
            ),
            Mode::Txt2Img,
            &model,
            &Limits::default(),
            &options,
        )
        .unwrap();
        assert_eq!(plan.request.steps, 50);
        assert_eq!(plan.request.guidance_scale, 7.0);
        assert_eq!(plan.request.clip_skip, 2);
        assert_eq!(plan.request.seeds, vec![7, 8, 9, 10, 11, 12]);
        assert_eq!(plan.sampler, SamplerKind::Euler);
        assert_eq!((plan.batch_size, plan.n_iter), (2, 3));
        let too_many = plan_error(json!({"prompt": "x", "batch_size": 20, "n_iter": 20}));
        assert_eq!(too_many.field.as_deref(), Some("batch_size"));
        // 2^32 x 2^32 overflows usize: refused with a message, never wrapped to zero images.
        let huge = 1_u64 << 32;
        let overflow = plan_error(json!({"prompt": "x", "batch_size": huge, "n_iter": huge}));
        assert_eq!(overflow.code, "invalid_count");
        assert!(overflow.message.contains("exceeds"), "{}", overflow.message);
        assert_eq!(
            plan_error(json!({"prompt": "x", "cfg_scale": 99}))
                .field
                .as_deref(),
            Some("cfg_scale")
        );
        assert_eq!(
            plan_error(json!({"prompt": ""})).field.as_deref(),
            Some("prompt")
        );
    }

    fn plan_error(value: Value) -> FieldError {
        let model = sd_engine::fake::FakeBackend::default_info();
        plan(
            &body(value),
            Mode::Txt2Img,
            &model,
            &Limits::default(),
            &Map::new(),
        )
        .err()
        .unwrap()
    }
}
