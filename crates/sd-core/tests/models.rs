//! Each network against diffusers on the tiny fixtures: text embeddings, one UNet call, VAE decode and
//! encode, within 1e-4 relative error in f32 on the CPU.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use sd_core::loader::components::{load_text_encoder, load_unet, load_vae};
use sd_core::models::Family;
use sd_core::schedulers::PredictionType;

const TOL: f32 = 1e-4;

fn ids_of(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect()
}

fn unet(model: &str) -> sd_core::models::unet::UNet {
    load_unet(
        &model_dir(model).join("unet"),
        DType::F32,
        &Device::Cpu,
        None,
    )
    .unwrap()
    .model
}

fn vae(model: &str) -> sd_core::models::vae::AutoencoderKl {
    load_vae(
        &model_dir(model).join("vae"),
        DType::F32,
        &Device::Cpu,
        None,
    )
    .unwrap()
    .model
}

/// The encoder alone on diffusers' own token ids (independent of our tokenizer).
fn check_text_encoder(model: &str) {
    let te = load_text_encoder(
        &model_dir(model).join("text_encoder"),
        DType::F32,
        &Device::Cpu,
        None,
    )
    .unwrap()
    .model;
    let g = golden(model, "text_embeds.safetensors");
    for (ids, embeds) in [
        ("input_ids", "prompt_embeds"),
        ("negative_input_ids", "negative_prompt_embeds"),
        ("empty_input_ids", "empty_prompt_embeds"),
    ] {
        let out = te.forward(&[ids_of(get(&g, ids))], 0, true).unwrap();
        assert_close(
            &format!("{model} {embeds}"),
            &out.hidden,
            get(&g, embeds),
            TOL,
        );
    }
    let out = te
        .forward(&[ids_of(get(&g, "input_ids"))], 1, true)
        .unwrap();
    assert_close(
        &format!("{model} clip skip 2"),
        &out.hidden,
        get(&g, "prompt_embeds_clip_skip2"),
        TOL,
    );
}

/// Tokenizer + encoder through the pipeline's public API.
fn check_text(model: &str) {
    let p = load(model);
    let g = golden(model, "text_embeds.safetensors");
    let cases = golden_dir(model).join("cases.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cases).unwrap()).unwrap();
    let text = &cases["text"];
    let prompt = text["prompt"].as_str().unwrap();
    let negative = text["negative_prompt"].as_str().unwrap();
    assert_eq!(
        p.tokenizer().encode_padded(prompt),
        ids_of(get(&g, "input_ids")),
        "{model}: prompt token ids"
    );
    assert_eq!(
        p.tokenizer().encode_padded(negative),
        ids_of(get(&g, "negative_input_ids")),
        "{model}: negative ids"
    );
    assert_eq!(
        p.tokenizer().encode_padded(""),
        ids_of(get(&g, "empty_input_ids")),
        "{model}: empty ids"
    );
    assert_close(
        "prompt_embeds",
        &p.encode_prompt(prompt, 1).unwrap(),
        get(&g, "prompt_embeds"),
        TOL,
    );
    assert_close(
        "negative_prompt_embeds",
        &p.encode_prompt(negative, 1).unwrap(),
        get(&g, "negative_prompt_embeds"),
        TOL,
    );
    assert_close(
        "empty_prompt_embeds",
        &p.encode_prompt("", 1).unwrap(),
        get(&g, "empty_prompt_embeds"),
        TOL,
    );
    assert_close(
        "clip skip 2",
        &p.encode_prompt(prompt, 2).unwrap(),
        get(&g, "prompt_embeds_clip_skip2"),
        TOL,
    );
    assert!(p.encode_prompt(prompt, 0).is_err());
}

fn check_unet(model: &str) {
    let unet = unet(model);
    let g = golden(model, "unet.safetensors");
    let t = get(&g, "timestep").to_scalar::<f32>().unwrap() as f64;
    let out = unet
        .forward(
            get(&g, "sample"),
            t,
            get(&g, "encoder_hidden_states"),
            None,
            None,
        )
        .unwrap();
    assert_close("unet out", &out, get(&g, "out"), TOL);
    let t = get(&g, "timestep_frac").to_scalar::<f32>().unwrap() as f64;
    let out = unet
        .forward(
            get(&g, "sample"),
            t,
            get(&g, "encoder_hidden_states"),
            None,
            None,
        )
        .unwrap();
    assert_close("unet out_frac", &out, get(&g, "out_frac"), TOL);
    if let Some(sample) = g.get("sample_odd") {
        let t = get(&g, "timestep").to_scalar::<f32>().unwrap() as f64;
        let out = unet
            .forward(sample, t, get(&g, "encoder_hidden_states_odd"), None, None)
            .unwrap();
        assert_close("unet out_odd", &out, get(&g, "out_odd"), TOL);
    }
}

fn check_vae(model: &str) {
    let vae = vae(model);
    let g = golden(model, "vae.safetensors");
    let decoded = vae.decode(get(&g, "latents")).unwrap();
    assert_close("vae decode", &decoded, get(&g, "decoded"), TOL);
    let dist = vae.encode(get(&g, "image")).unwrap();
    assert_close("posterior mean", &dist.mean, get(&g, "posterior_mean"), TOL);
    assert_close("posterior std", &dist.std, get(&g, "posterior_std"), TOL);
}

#[test]
fn sd1_text_encoder_matches_diffusers() {
    check_text_encoder("tiny-sd1");
}

#[test]
fn sd2_text_encoder_matches_diffusers() {
    check_text_encoder("tiny-sd2");
}

#[test]
fn sd1_prompt_encoding_matches_diffusers() {
    check_text("tiny-sd1");
}

#[test]
fn sd2_prompt_encoding_matches_diffusers() {
    check_text("tiny-sd2");
}

#[test]
fn sd1_unet_matches_diffusers() {
    check_unet("tiny-sd1");
}

#[test]
fn sd2_unet_matches_diffusers() {
    check_unet("tiny-sd2");
}

#[test]
fn sd1_inpaint_unet_matches_diffusers() {
    check_unet("tiny-sd1-inpaint");
}

#[test]
fn sd1_vae_matches_diffusers() {
    check_vae("tiny-sd1");
}

#[test]
fn sd2_vae_matches_diffusers() {
    check_vae("tiny-sd2");
}

#[test]
fn model_info_comes_from_the_configs() {
    let p = load("tiny-sd1");
    let info = p.info();
    assert_eq!(info.family, Family::Sd1);
    assert_eq!(info.size_multiple, 8);
    assert_eq!((info.default_width, info.default_height), (64, 64));
    assert!(!info.inpainting);
    assert_eq!(load("tiny-sd2").info().family, Family::Sd2);
    assert_eq!(
        load("tiny-sd2").info().prediction_type,
        PredictionType::VPrediction
    );
    assert!(load("tiny-sd1-inpaint").info().inpainting);
}

#[test]
fn every_tensor_of_the_tiny_models_is_consumed() {
    for model in ["tiny-sd1", "tiny-sd2", "tiny-sd1-inpaint"] {
        let p = load(model);
        let unused: Vec<_> = p
            .unused_tensors()
            .into_iter()
            .filter(|(_, names)| names.iter().any(|n| !n.ends_with("position_ids")))
            .collect();
        assert!(unused.is_empty(), "{model}: unused tensors {unused:?}");
    }
}

/// Tiled decoding reproduces diffusers' `tiled_decode` (tiles, quarter-tile blends, crops), and differs from the
/// whole-image decode, so the comparison cannot pass by decoding untiled.
#[test]
fn sd1_vae_tiled_decode_matches_diffusers() {
    let vae = vae("tiny-sd1");
    let g = golden("tiny-sd1", "vae_tiled_decode.safetensors");
    let z = get(&g, "latents");
    assert!(vae.exceeds_tile(z).unwrap());
    let geometry = vae.config().tile_geometry();
    assert_eq!((geometry.latent, geometry.sample), (8, 64));
    let tiled = vae.decode_tiled(z).unwrap();
    assert_eq!(tiled.dims(), &[1, 3, 128, 160]);
    assert_close("vae tiled decode", &tiled, get(&g, "tiled"), TOL);
    assert!(relative_error(&tiled, get(&g, "plain")) > 10.0 * TOL);
    assert_close(
        "vae plain decode",
        &vae.decode(z).unwrap(),
        get(&g, "plain"),
        TOL,
    );
}

/// Tiled encoding reproduces diffusers' `tiled_encode` (mean and std of the latent distribution).
#[test]
fn sd1_vae_tiled_encode_matches_diffusers() {
    let vae = vae("tiny-sd1");
    let g = golden("tiny-sd1", "vae_tiled_decode.safetensors");
    let dist = vae.encode_tiled(get(&g, "image")).unwrap();
    assert_eq!(dist.mean.dims(), &[1, 4, 16, 20]);
    assert_close("tiled mean", &dist.mean, get(&g, "tiled_mean"), TOL);
    assert_close("tiled std", &dist.std, get(&g, "tiled_std"), TOL);
    assert!(relative_error(&dist.mean, get(&g, "plain_mean")) > 10.0 * TOL);
}
