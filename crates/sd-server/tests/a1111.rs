//! The A1111 API in-process against the fake backend: txt2img/img2img fields and `{images, parameters, info}`,
//! refused and ignored fields, progress/interrupt/skip, the discovery probes, options and auth.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.
#![recursion_limit = "256"] // for the large `json!` literals of full A1111 requests

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use common::{app, app_with, TestApp};
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use sd_engine::fake::FakeBackend;
use sd_engine::metadata::{read_parameters, Infotext};
use sd_engine::EngineConfig;
use sd_server::ServerConfig;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn png(image: DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let reply = app.post_json(path, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()
}

/// `info` is a JSON string, as A1111 returns it.
fn info(response: &Value) -> Value {
    serde_json::from_str(response["info"].as_str().unwrap()).unwrap()
}

/// What webuiapi 0.9 sends for `api.txt2img(prompt=..., seed=..., steps=..., width=..., height=...)`.
fn webuiapi_txt2img(prompt: &str) -> Value {
    json!({
        "enable_hr": false, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0,
        "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": null, "hr_sampler_name": null,
        "hr_scheduler": null, "hr_prompt": "", "hr_negative_prompt": "", "denoising_strength": 0.7,
        "firstphase_width": 0, "firstphase_height": 0, "prompt": prompt, "styles": [], "seed": 11,
        "subseed": -1, "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0,
        "batch_size": 1, "n_iter": 1, "steps": 3, "cfg_scale": 7.0, "width": 64, "height": 64,
        "restore_faces": false, "tiling": false, "do_not_save_samples": false, "do_not_save_grid": false,
        "negative_prompt": "", "eta": 1.0, "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1,
        "override_settings": {}, "override_settings_restore_afterwards": true, "sampler_name": "Euler a",
        "scheduler": "Automatic", "sampler_index": "Euler a", "script_name": null, "script_args": [],
        "send_images": true, "save_images": false, "alwayson_scripts": {},
    })
}

#[tokio::test]
async fn txt2img_answers_images_parameters_and_info_like_a1111() {
    let app = app(Duration::ZERO).await;
    let mut request = webuiapi_txt2img("a castle, at night");
    request["negative_prompt"] = json!("blurry");
    request["batch_size"] = json!(2);
    request["n_iter"] = json!(2);
    let response = post_ok(&app, "/sdapi/v1/txt2img", request).await;
    let images = response["images"].as_array().unwrap();
    assert_eq!(images.len(), 4);
    let info = info(&response);
    assert_eq!(info["all_seeds"], json!([11, 12, 13, 14]));
    assert_eq!(info["seed"], 11);
    assert_eq!(info["all_prompts"].as_array().unwrap().len(), 4);
    assert_eq!(info["sampler_name"], "Euler a");
    assert_eq!(info["cfg_scale"], 7.0);
    assert_eq!(info["steps"], 3);
    assert_eq!(info["batch_size"], 2);
    assert_eq!(info["sd_model_name"], "fake");
    assert_eq!(info["sd_model_hash"], "fa4e0000f4");
    assert_eq!(info["clip_skip"], 1);
    assert_eq!(info["index_of_first_image"], 0);
    assert_eq!(info["all_subseeds"].as_array().unwrap().len(), 4);
    assert!(info["job_timestamp"].as_str().unwrap().len() == 14);
    for key in [
        "restore_faces",
        "styles",
        "extra_generation_params",
        "is_using_inpainting_conditioning",
        "seed_resize_from_w",
        "seed_resize_from_h",
        "denoising_strength",
        "width",
        "height",
        "negative_prompt",
        "all_negative_prompts",
        "subseed",
        "version",
    ] {
        assert!(info.get(key).is_some(), "info.{key} missing");
    }
    let infotexts = info["infotexts"].as_array().unwrap();
    for (index, image) in images.iter().enumerate() {
        let bytes = unb64(image.as_str().unwrap());
        let text = read_parameters(&bytes).unwrap();
        assert_eq!(text, infotexts[index].as_str().unwrap());
        let seed = 11 + index as u64;
        assert!(text.starts_with(&format!(
            "a castle, at night\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, Schedule type: Automatic, \
             CFG scale: 7.0, Seed: {seed}, Size: 64x64, Model hash: fa4e0000f4, Model: fake, Version: "
        )), "{text}");
        let pixels = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(
            pixels,
            FakeBackend::image_for(seed, "a castle, at night", 64, 64)
        );
    }
    // Two batches of two: two engine jobs.
    assert_eq!(
        app.get("/v1/jobs").await.json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let parameters = &response["parameters"];
    assert_eq!(parameters["prompt"], "a castle, at night");
    assert_eq!(parameters["eta"], 1.0);
    assert_eq!(parameters["enable_hr"], false);
}

#[tokio::test]
async fn defaults_samplers_schedules_and_clip_skip() {
    let app = app(Duration::ZERO).await;
    let response = post_ok(
        &app,
        "/sdapi/v1/txt2img",
        json!({"prompt": "p", "width": 64, "height": 64, "steps": 2, "sampler_name": "DPM++ 2M",
               "scheduler": "Karras", "cfg_scale": 6.5, "seed": 3,
               "override_settings": {"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "fake.safetensors"}}),
    )
    .await;
    let first = info(&response);
    assert_eq!(first["sampler_name"], "DPM++ 2M");
    assert_eq!(first["clip_skip"], 2);
    let text = first["infotexts"][0].as_str().unwrap();
    assert!(
        text.contains("Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3,"),
        "{text}"
    );
    assert!(text.contains("Clip skip: 2"), "{text}");
    // No steps and no sampler: A1111's defaults (50 steps, Euler); random seed below 2^32.
    let response = post_ok(
        &app,
        "/sdapi/v1/txt2img",
        json!({"prompt": "p", "width": 64, "height": 64}),
    )
    .await;
    let defaults = info(&response);
    assert_eq!(defaults["steps"], 50);
    assert_eq!(defaults["sampler_name"], "Euler");
    assert!(defaults["seed"].as_u64().unwrap() < 1 << 32);
    // send_images false: no images, still info.
    let response = post_ok(
        &app,
        "/sdapi/v1/txt2img",
        json!({"prompt": "p", "width": 64, "height": 64, "steps": 1, "send_images": false}),
    )
    .await;
    assert_eq!(response["images"], json!([]));
    assert_eq!(info(&response)["infotexts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unsupported_fields_are_refused_with_422_naming_them() {
    let app = app(Duration::ZERO).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("enable_hr", json!(true), "enable_hr"),
        ("restore_faces", json!(true), "restore_faces"),
        ("tiling", json!(true), "tiling"),
        ("styles", json!(["Cinematic"]), "styles"),
        ("subseed_strength", json!(0.5), "subseed_strength"),
        ("seed_resize_from_w", json!(128), "seed_resize_from_w"),
        ("script_name", json!("x/y/z plot"), "script_name"),
        (
            "alwayson_scripts",
            json!({"ControlNet": {"args": [{"enabled": true}]}}),
            "alwayson_scripts",
        ),
        (
            "override_settings",
            json!({"sd_vae": "vae-ft-mse.safetensors"}),
            "override_settings",
        ),
        ("sampler_name", json!("DPM++ SDE"), "sampler_name"),
        ("scheduler", json!("Exponential"), "scheduler"),
        ("cfg_scale", json!(45), "cfg_scale"),
        ("steps", json!(0), "steps"),
        ("width", json!(65), "width"),
        ("batch_size", json!(0), "batch_size"),
        ("n_iter", json!(200), "batch_size"),
        ("prompt", json!(""), "prompt"),
        ("seed", json!("abc"), "seed"),
        (
            "override_settings",
            json!({"CLIP_stop_at_last_layers": 40}),
            "CLIP_stop_at_last_layers",
        ),
    ];
    for (key, value, field) in cases {
        let mut request = webuiapi_txt2img("p");
        request[key] = value;
        let reply = app.post_json("/sdapi/v1/txt2img", &request).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{key}: {}",
            reply.text()
        );
        let body = reply.json();
        assert_eq!(body["error"]["field"], field, "{key}: {body}");
        assert!(body["detail"].as_str().unwrap().len() > 5, "{body}");
    }
    let mut request = webuiapi_txt2img("p");
    request["inpainting_fill"] = json!(2);
    request["init_images"] = json!([b64(&png(DynamicImage::new_rgb8(64, 64)))]);
    let reply = app.post_json("/sdapi/v1/img2img", &request).await;
    assert_eq!(reply.json()["error"]["field"], "inpainting_fill");
    let malformed = app
        .send(
            Request::post("/sdapi/v1/txt2img")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("[1, 2"))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn img2img_resizes_and_records_denoising_strength() {
    let app = app(Duration::ZERO).await;
    let init = b64(&png(DynamicImage::ImageRgb8(RgbImage::from_pixel(
        100,
        50,
        Rgb([200, 10, 10]),
    ))));
    let response = post_ok(
        &app,
        "/sdapi/v1/img2img",
        json!({"init_images": [init.clone()], "prompt": "p", "denoising_strength": 0.6, "width": 64,
               "height": 64, "steps": 2, "seed": 1, "resize_mode": 1, "include_init_images": true,
               "image_cfg_scale": 1.5, "sampler_name": "Euler a"}),
    )
    .await;
    let images = response["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "the result, then the init image");
    assert_eq!(images[1].as_str().unwrap(), init);
    let info = info(&response);
    assert_eq!(info["denoising_strength"], 0.6);
    assert!(info["infotexts"][0]
        .as_str()
        .unwrap()
        .contains("Denoising strength: 0.6"));
    assert_eq!(response["parameters"]["init_images"], Value::Null);
    let job = &app.get("/v1/jobs").await.json()["jobs"][0];
    assert_eq!(job["operation"], "image_transform");
    let missing = app
        .post_json(
            "/sdapi/v1/img2img",
            &json!({"prompt": "p", "width": 64, "height": 64}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.json()["error"]["field"], "init_images");
    let bad = app
        .post_json(
            "/sdapi/v1/img2img",
            &json!({"prompt": "p", "init_images": ["bm90IGFuIGltYWdl"], "width": 64, "height": 64}),
        )
        .await;
    assert_eq!(bad.json()["error"]["code"], "invalid_image");
}

#[tokio::test]
async fn inpainting_only_masked_pastes_into_the_original() {
    let app = app(Duration::ZERO).await;
    let original = RgbImage::from_pixel(96, 80, Rgb([10, 20, 30]));
    let mut mask = GrayImage::new(96, 80);
    for x in 40..56 {
        for y in 30..46 {
            mask.put_pixel(x, y, Luma([255]));
        }
    }
    let request = json!({
        "init_images": [b64(&png(DynamicImage::ImageRgb8(original.clone())))],
        "mask": b64(&png(DynamicImage::ImageLuma8(mask))),
        "prompt": "p", "width": 64, "height": 64, "steps": 2, "seed": 4, "denoising_strength": 0.9,
        "mask_blur": 2, "inpainting_fill": 1, "inpaint_full_res": true, "inpaint_full_res_padding": 4,
    });
    let response = post_ok(&app, "/sdapi/v1/img2img", request.clone()).await;
    let bytes = unb64(response["images"][0].as_str().unwrap());
    let result = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(
        result.dimensions(),
        (96, 80),
        "only masked keeps the original size"
    );
    assert_eq!(
        *result.get_pixel(0, 0),
        Rgb([10, 20, 30]),
        "far from the mask: untouched"
    );
    assert_ne!(
        *result.get_pixel(47, 37),
        Rgb([10, 20, 30]),
        "inside the mask: repainted"
    );
    let text = read_parameters(&bytes).unwrap();
    assert!(
        text.contains("Denoising strength: 0.9, Mask blur: 2, Inpaint area: Only masked, Masked area padding: 4, Version: "),
        "{text}"
    );
    assert_eq!(text, info(&response)["infotexts"][0].as_str().unwrap());
    assert_eq!(
        app.get("/v1/jobs").await.json()["jobs"][0]["operation"],
        "image_inpaint"
    );

    let mut whole = request;
    whole["inpaint_full_res"] = json!(false);
    let response = post_ok(&app, "/sdapi/v1/img2img", whole).await;
    let bytes = unb64(response["images"][0].as_str().unwrap());
    let result = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(result.dimensions(), (64, 64));
    let text = read_parameters(&bytes).unwrap();
    assert!(text.contains("Mask blur: 2, Version"), "{text}");
}

#[tokio::test]
async fn inverted_masks_repaint_the_outside_and_fill_is_the_default() {
    let app = app(Duration::ZERO).await;
    let original = RgbImage::from_pixel(96, 80, Rgb([10, 20, 30]));
    let mut mask = GrayImage::new(96, 80);
    for x in 40..56 {
        for y in 30..46 {
            mask.put_pixel(x, y, Luma([255]));
        }
    }
    let response = post_ok(
        &app,
        "/sdapi/v1/img2img",
        json!({
            "init_images": [b64(&png(DynamicImage::ImageRgb8(original)))],
            "mask": b64(&png(DynamicImage::ImageLuma8(mask))),
            "prompt": "p", "width": 64, "height": 64, "steps": 2, "seed": 4,
            "mask_blur": 0, "inpainting_mask_invert": 1,
        }),
    )
    .await;
    let bytes = unb64(response["images"][0].as_str().unwrap());
    let result = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(result.dimensions(), (96, 80));
    assert_eq!(
        *result.get_pixel(47, 37),
        Rgb([10, 20, 30]),
        "the square is kept"
    );
    assert_ne!(
        *result.get_pixel(2, 2),
        Rgb([10, 20, 30]),
        "the rest is repainted"
    );
    let info = info(&response);
    assert_eq!(info["extra_generation_params"]["Mask blur"], 0);
    assert_eq!(info["denoising_strength"], 0.75, "A1111's img2img default");
}

/// Runs a slow A1111 request in the background and returns its handle.
fn spawn_txt2img(app: &TestApp, body: Value) -> tokio::task::JoinHandle<common::Reply> {
    let router = app.router.clone();
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = router
            .oneshot(
                Request::post("/sdapi/v1/txt2img")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        common::Reply {
            status,
            headers,
            body,
        }
    })
}

async fn wait_for_progress(app: &TestApp, predicate: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let progress = app.get("/sdapi/v1/progress").await.json();
            if predicate(&progress) {
                return progress;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn progress_reports_the_running_request_and_interrupt_stops_it() {
    let engine = EngineConfig {
        preview_interval: Some(Duration::ZERO),
        ..EngineConfig::default()
    };
    let app = app_with(Duration::from_millis(20), engine, ServerConfig::default()).await;
    let idle = app.get("/sdapi/v1/progress").await.json();
    assert_eq!(idle["progress"], 0.0);
    assert_eq!(idle["state"]["job_count"], 0);
    assert_eq!(idle["current_image"], Value::Null);

    let pending = spawn_txt2img(
        &app,
        json!({"prompt": "p", "width": 64, "height": 64, "steps": 40, "n_iter": 3, "seed": 1}),
    );
    let progress = wait_for_progress(&app, |progress| {
        progress["state"]["sampling_step"].as_u64().unwrap_or(0) >= 2
            && !progress["current_image"].is_null()
    })
    .await;
    assert_eq!(progress["state"]["job_count"], 3);
    assert_eq!(progress["state"]["job_no"], 0);
    assert_eq!(progress["state"]["sampling_steps"], 40);
    assert!(progress["progress"].as_f64().unwrap() > 0.0);
    assert!(progress["eta_relative"].as_f64().unwrap() > 0.0);
    let preview = unb64(progress["current_image"].as_str().unwrap());
    image::load_from_memory(&preview).unwrap();
    assert_eq!(
        progress["state"]["job_timestamp"].as_str().unwrap().len(),
        14
    );

    assert_eq!(
        app.post_json("/sdapi/v1/interrupt", &json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let reply = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json()["images"],
        json!([]),
        "interrupted during the first batch"
    );
    let idle = app.get("/sdapi/v1/progress").await.json();
    assert_eq!(idle["state"]["job_count"], 0);
}

#[tokio::test]
async fn skip_drops_only_the_current_batch() {
    let app = app(Duration::from_millis(20)).await;
    let pending = spawn_txt2img(
        &app,
        json!({"prompt": "p", "width": 64, "height": 64, "steps": 20, "n_iter": 2, "seed": 1}),
    );
    wait_for_progress(&app, |progress| {
        progress["state"]["sampling_step"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(
        app.post_json("/sdapi/v1/skip", &json!({})).await.status,
        StatusCode::OK
    );
    let reply = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .unwrap()
        .unwrap();
    let response = reply.json();
    let images = response["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "the second batch still ran");
    let text = read_parameters(&unb64(images[0].as_str().unwrap())).unwrap();
    assert!(text.contains("Seed: 2,"), "{text}");
}

#[tokio::test]
async fn probes_describe_this_worker() {
    let app = app(Duration::ZERO).await;
    let samplers = app.get("/sdapi/v1/samplers").await.json();
    let names: Vec<&str> = samplers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in [
        "Euler a", "Euler", "DPM++ 2M", "DDIM", "PLMS", "Heun", "UniPC", "LCM",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(samplers[0].get("aliases").is_some() && samplers[0].get("options").is_some());
    let schedulers = app.get("/sdapi/v1/schedulers").await.json();
    assert_eq!(schedulers[0]["label"], "Automatic");
    assert_eq!(schedulers[1]["label"], "Karras");
    let models = app.get("/sdapi/v1/sd-models").await.json();
    assert_eq!(models[0]["title"], "fake [fa4e0000f4]");
    assert_eq!(models[0]["model_name"], "fake");
    assert_eq!(models[0]["hash"], "fa4e0000f4");
    assert_eq!(models[0]["sha256"].as_str().unwrap().len(), 64);
    let options = app.get("/sdapi/v1/options").await.json();
    assert_eq!(options["sd_model_checkpoint"], "fake [fa4e0000f4]");
    assert_eq!(options["CLIP_stop_at_last_layers"], 1);
    assert_eq!(app.get("/sdapi/v1/cmd-flags").await.json()["api"], true);
    assert!(app
        .get("/sdapi/v1/memory")
        .await
        .json()
        .get("ram")
        .is_some());
    assert_eq!(
        app.get("/sdapi/v1/embeddings").await.json()["loaded"],
        json!({})
    );
    assert_eq!(
        app.get("/sdapi/v1/scripts").await.json()["txt2img"],
        json!([])
    );
    assert_eq!(
        app.get("/sdapi/v1/upscalers").await.json()[0]["name"],
        "None"
    );
    for path in [
        "sd-vae",
        "loras",
        "hypernetworks",
        "face-restorers",
        "prompt-styles",
        "latent-upscale-modes",
        "realesrgan-models",
        "extensions",
        "script-info",
        "sd-modules",
    ] {
        let reply = app.get(&format!("/sdapi/v1/{path}")).await;
        assert_eq!(reply.json(), json!([]), "{path}");
    }
    let refresh = app
        .post_json("/sdapi/v1/refresh-checkpoints", &json!({}))
        .await;
    assert_eq!(refresh.status, StatusCode::OK);
    assert_eq!(
        app.get("/sdapi/v1/no-such-route").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn options_select_the_loaded_model_and_set_clip_skip() {
    let app = app(Duration::ZERO).await;
    for name in [
        "fake [fa4e0000f4]",
        "fake",
        "fake.safetensors",
        "fa4e0000f4",
    ] {
        let reply = app
            .post_json("/sdapi/v1/options", &json!({"sd_model_checkpoint": name}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
        assert_eq!(reply.json(), Value::Null);
    }
    let other = app
        .post_json(
            "/sdapi/v1/options",
            &json!({"sd_model_checkpoint": "sdxl [0123456789]"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json()["error"]["field"], "sd_model_checkpoint");
    let bad = app
        .post_json("/sdapi/v1/options", &json!({"CLIP_stop_at_last_layers": 0}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let set = app
        .post_json(
            "/sdapi/v1/options",
            &json!({"CLIP_stop_at_last_layers": 2, "samples_format": "jpg"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let options = app.get("/sdapi/v1/options").await.json();
    assert_eq!(options["CLIP_stop_at_last_layers"], 2);
    assert_eq!(options["samples_format"], "jpg");
    let response = post_ok(
        &app,
        "/sdapi/v1/txt2img",
        json!({"prompt": "p", "width": 64, "height": 64, "steps": 1}),
    )
    .await;
    assert!(info(&response)["infotexts"][0]
        .as_str()
        .unwrap()
        .contains("Clip skip: 2"));
}

#[tokio::test]
async fn png_info_reads_our_infotext_back() {
    let app = app(Duration::ZERO).await;
    let response = post_ok(
        &app,
        "/sdapi/v1/txt2img",
        json!({"prompt": "a, b: c", "width": 64, "height": 72, "steps": 2, "seed": 8}),
    )
    .await;
    let image = response["images"][0].as_str().unwrap();
    let reply = post_ok(
        &app,
        "/sdapi/v1/png-info",
        json!({"image": format!("data:image/png;base64,{image}")}),
    )
    .await;
    assert_eq!(reply["info"], info(&response)["infotexts"][0]);
    assert_eq!(reply["parameters"]["Prompt"], "a, b: c");
    assert_eq!(reply["parameters"]["Seed"], "8");
    assert_eq!(reply["parameters"]["Size-1"], "64");
    assert_eq!(reply["parameters"]["Size-2"], "72");
    let parsed = Infotext::parse(reply["info"].as_str().unwrap());
    assert_eq!(parsed.get("Steps"), Some("2"));
    let plain = b64(&png(DynamicImage::new_rgb8(4, 4)));
    let empty = post_ok(&app, "/sdapi/v1/png-info", json!({"image": plain})).await;
    assert_eq!(empty["info"], "");
}

#[tokio::test]
async fn basic_and_bearer_auth_are_accepted() {
    let server = ServerConfig {
        api_key: Some("pw".into()),
        ..ServerConfig::default()
    };
    let app = app_with(Duration::ZERO, EngineConfig::default(), server).await;
    let get = |auth: Option<String>| {
        let mut builder = Request::get("/sdapi/v1/sd-models");
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        builder.body(Body::empty()).unwrap()
    };
    assert_eq!(app.send(get(None)).await.status, StatusCode::UNAUTHORIZED);
    let basic = b64(b"webui:pw");
    assert_eq!(
        app.send(get(Some(format!("Basic {basic}")))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(get(Some("Bearer pw".into()))).await.status,
        StatusCode::OK
    );
    let wrong = b64(b"webui:nope");
    assert_eq!(
        app.send(get(Some(format!("Basic {wrong}")))).await.status,
        StatusCode::UNAUTHORIZED
    );
}
