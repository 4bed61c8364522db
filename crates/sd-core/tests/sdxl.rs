//! SDXL against diffusers on the tiny SDXL fixtures: both text encoders (penultimate states concatenated,
//! pooled projection of encoder 2), the UNet's `text_time` add-embedding with size conditioning, the VAE, and
//! (when the pipeline goldens exist) whole pipelines within 2/255.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use sd_core::loader::components::{load_unet, load_vae};
use sd_core::models::unet::AddedConditions;
use sd_core::models::Family;
use sd_core::schedulers::SamplerKind;

const TOL: f32 = 1e-4;

#[test]
fn sdxl_prompt_encoding_matches_diffusers() {
    let p = load("tiny-sdxl");
    assert_eq!(p.info().family, Family::Sdxl);
    let g = golden("tiny-sdxl", "text_embeds.safetensors");
    // The prompts tools/make_sdxl_fixtures.py encodes.
    let prompt = "a photo of an astronaut riding a horse on mars";
    let negative = "blurry, low quality";
    let ids: Vec<u32> = get(&g, "input_ids")
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert_eq!(p.tokenizer().encode_padded(prompt), ids, "tokenizer 1 ids");
    let (context, pooled) = p.encode_prompt_pooled(prompt, 1).unwrap();
    assert_close("prompt_embeds", &context, get(&g, "prompt_embeds"), TOL);
    assert_close(
        "pooled_prompt_embeds",
        &pooled.unwrap(),
        get(&g, "pooled_prompt_embeds"),
        TOL,
    );
    let (neg, neg_pooled) = p.encode_prompt_pooled(negative, 1).unwrap();
    assert_close(
        "negative_prompt_embeds",
        &neg,
        get(&g, "negative_prompt_embeds"),
        TOL,
    );
    assert_close(
        "negative_pooled",
        &neg_pooled.unwrap(),
        get(&g, "negative_pooled_prompt_embeds"),
        TOL,
    );
    let (empty, _) = p.encode_prompt_pooled("", 1).unwrap();
    assert_close(
        "empty_prompt_embeds",
        &empty,
        get(&g, "empty_prompt_embeds"),
        TOL,
    );
    let (skip2, _) = p.encode_prompt_pooled(prompt, 2).unwrap();
    assert_close(
        "clip skip 2",
        &skip2,
        get(&g, "prompt_embeds_clip_skip2"),
        TOL,
    );
}

#[test]
fn sdxl_unet_with_size_conditioning_matches_diffusers() {
    let unet = load_unet(
        &model_dir("tiny-sdxl").join("unet"),
        DType::F32,
        &Device::Cpu,
        None,
    )
    .unwrap();
    assert!(
        unet.weights.unused().is_empty(),
        "unused: {:?}",
        unet.weights.unused()
    );
    let unet = unet.model;
    let g = golden("tiny-sdxl", "unet.safetensors");
    let t = get(&g, "timestep").to_scalar::<f32>().unwrap() as f64;
    let call = |sample: &str, t: f64, ehs: &str, te: &str, ti: &str| -> Tensor {
        let added = AddedConditions {
            text_embeds: get(&g, te),
            time_ids: get(&g, ti),
        };
        unet.forward(get(&g, sample), t, get(&g, ehs), Some(&added), None)
            .unwrap()
    };
    assert_close(
        "out",
        &call(
            "sample",
            t,
            "encoder_hidden_states",
            "text_embeds",
            "time_ids",
        ),
        get(&g, "out"),
        TOL,
    );
    let frac = get(&g, "timestep_frac").to_scalar::<f32>().unwrap() as f64;
    assert_close(
        "out_frac",
        &call(
            "sample",
            frac,
            "encoder_hidden_states",
            "text_embeds",
            "time_ids",
        ),
        get(&g, "out_frac"),
        TOL,
    );
    assert_close(
        "out_time_ids",
        &call(
            "sample",
            t,
            "encoder_hidden_states",
            "text_embeds",
            "time_ids_mixed",
        ),
        get(&g, "out_time_ids"),
        TOL,
    );
    assert_close(
        "out_odd",
        &call(
            "sample_odd",
            t,
            "encoder_hidden_states_odd",
            "text_embeds_odd",
            "time_ids_odd",
        ),
        get(&g, "out_odd"),
        TOL,
    );
    // The add-embedding is required: without it the UNet refuses rather than guessing.
    assert!(unet
        .forward(
            get(&g, "sample"),
            t,
            get(&g, "encoder_hidden_states"),
            None,
            None
        )
        .is_err());
}

#[test]
fn sdxl_vae_matches_diffusers() {
    let vae = load_vae(
        &model_dir("tiny-sdxl").join("vae"),
        DType::F32,
        &Device::Cpu,
        None,
    )
    .unwrap()
    .model;
    assert_eq!(vae.config().scaling_factor, 0.13025);
    let g = golden("tiny-sdxl", "vae.safetensors");
    assert_close(
        "decoded",
        &vae.decode(get(&g, "latents")).unwrap(),
        get(&g, "decoded"),
        TOL,
    );
    let dist = vae.encode(get(&g, "image")).unwrap();
    assert_close("posterior mean", &dist.mean, get(&g, "posterior_mean"), TOL);
}

#[test]
fn sdxl_inpaint_and_turbo_models_load_with_their_defaults() {
    let inpaint = load("tiny-sdxl-inpaint");
    assert!(inpaint.info().inpainting);
    assert_eq!(inpaint.info().family, Family::Sdxl);
    let turbo = load("tiny-sdxl-turbo");
    assert_eq!(turbo.info().default_guidance, 0.0);
    assert!(turbo.info().default_steps <= 4);
    assert_eq!(turbo.info().default_sampler, SamplerKind::EulerAncestral);
    for name in ["tiny-sdxl", "tiny-sdxl-inpaint", "tiny-sdxl-turbo"] {
        let unused: Vec<_> = load(name)
            .unused_tensors()
            .into_iter()
            .filter(|(_, n)| n.iter().any(|t| !t.ends_with("position_ids")))
            .collect();
        assert!(unused.is_empty(), "{name}: {unused:?}");
    }
}
