//! The request defaults A1111's API models declare, echoed back as `parameters` in every answer.

use serde_json::{Map, Value};

use super::request::Mode;

/// The client-visible defaults of A1111's API models, echoed back as `parameters`.
pub fn default_parameters(mode: Mode) -> Map<String, Value> {
    // Split in parts: one `json!` this large exceeds the macro recursion limit.
    let parts = [
        serde_json::json!({
            "prompt": "", "negative_prompt": "", "styles": null, "seed": -1, "subseed": -1,
            "subseed_strength": 0, "seed_resize_from_h": -1, "seed_resize_from_w": -1,
            "sampler_name": null, "scheduler": null, "batch_size": 1, "n_iter": 1, "steps": 50,
            "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": null, "tiling": null,
        }),
        serde_json::json!({
            "do_not_save_samples": false, "do_not_save_grid": false, "eta": null,
            "denoising_strength": if mode == Mode::Img2Img { Value::from(0.75) } else { Value::Null },
            "s_min_uncond": null, "s_churn": null, "s_tmax": null, "s_tmin": null, "s_noise": null,
            "override_settings": null, "override_settings_restore_afterwards": true,
        }),
        serde_json::json!({
            "refiner_checkpoint": null, "refiner_switch_at": null, "disable_extra_networks": false,
            "firstpass_image": null, "comments": null, "sampler_index": "Euler", "script_name": null,
            "script_args": [], "send_images": true, "save_images": false, "alwayson_scripts": {},
            "force_task_id": null, "infotext": null,
        }),
    ];
    let mut defaults = Value::Object(Map::new());
    for part in parts {
        if let (Some(defaults), Value::Object(part)) = (defaults.as_object_mut(), part) {
            defaults.extend(part);
        }
    }
    let extra = match mode {
        Mode::Txt2Img => serde_json::json!({
            "enable_hr": false, "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2.0,
            "hr_upscaler": null, "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0,
            "hr_checkpoint_name": null, "hr_sampler_name": null, "hr_scheduler": null,
            "hr_prompt": "", "hr_negative_prompt": "",
        }),
        Mode::Img2Img => serde_json::json!({
            "init_images": null, "resize_mode": 0, "image_cfg_scale": null, "mask": null,
            "mask_blur_x": 4, "mask_blur_y": 4, "mask_blur": null, "mask_round": true,
            "inpainting_fill": 0, "inpaint_full_res": true, "inpaint_full_res_padding": 0,
            "inpainting_mask_invert": 0, "initial_noise_multiplier": null, "latent_mask": null,
            "include_init_images": false,
        }),
    };
    if let (Some(defaults), Some(extra)) = (defaults.as_object_mut(), extra.as_object()) {
        defaults.extend(extra.clone());
    }
    match defaults {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
