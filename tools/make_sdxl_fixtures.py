#!/usr/bin/env python3
"""Writes the tiny SDXL, SDXL-inpainting and SDXL-Turbo fixtures and the diffusers goldens the Rust tests use.

    python3 tools/make_sdxl_fixtures.py                      # tests/fixtures/models/tiny-sdxl* and golden/tiny-sdxl*
    python3 tools/make_sdxl_fixtures.py --models-only        # only the model folders (+ text/unet/vae goldens)
    python3 tools/make_sdxl_fixtures.py --full-size OUT_DIR  # OUT_DIR/sdxl: SDXL base shapes, random f16 weights

The SD 1.x/2.x counterpart is tools/make_fixtures.py; this script follows its conventions (file names, cases.json
schema, weight scaling, f32-vs-f64 check) and copies its few small helpers rather than importing them, so the two
can be run independently. Everything is deterministic (fixed seeds, fixed thread count): re-running rewrites
identical files. tests/fixtures/README-sdxl.md describes the layout (the contract with the Rust tests).
"""

import argparse
import gc
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Shared with the SD 1.x/2.x fixture script: one implementation of each small helper.
from make_fixtures import added_token, max_abs, rel, save_tensors, set_sampler, write_json  # noqa: E402
from clip_vocab import write_clip_tokenizer  # noqa: E402

import diffusers  # noqa: E402
import diffusers.utils.torch_utils as diffusers_torch_utils  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
import transformers  # noqa: E402

transformers.utils.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "models"
GOLDEN = FIXTURES / "golden"

THREADS = 2
TINY_MERGES = 500
PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE_PROMPT = "blurry, low quality"
IMAGE_SIZE = 64
STEPS = 8
GUIDANCE = 5.0

# ---------------------------------------------------------------------------------------------------------------
# Published configs (stabilityai/stable-diffusion-xl-base-1.0, stabilityai/sdxl-turbo,
# diffusers/stable-diffusion-xl-1.0-inpainting-0.1), with the keys the hub files have. Keys a file lacks take the
# class defaults in diffusers' from_config.
# ---------------------------------------------------------------------------------------------------------------

# stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

# sdxl-turbo scheduler/scheduler_config.json
SDXL_TURBO_SCHEDULER = {
    "_class_name": "EulerAncestralDiscreteScheduler",
    "_diffusers_version": "0.24.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

# stable-diffusion-xl-base-1.0 model_index.json
SDXL_MODEL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True,
    "add_watermarker": None,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# stable-diffusion-xl-base-1.0 unet/config.json
SDXL_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.19.0.dev0",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# stable-diffusion-xl-base-1.0 vae/config.json (the SDXL VAE overflows in f16: force_upcast)
SDXL_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.20.0.dev0",
    "_name_or_path": "../sdxl-vae/",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# stable-diffusion-xl-base-1.0 text_encoder/config.json (CLIP ViT-L/14 text tower). As in SD 1.x the token ids
# 0/2/1 are not CLIP's (bos 49406, eos/pad 49407): readers take ids from the tokenizer. With eos_token_id == 2
# transformers finds the pooled position by argmax(input_ids), i.e. the first `<|endoftext|>`.
SDXL_TEXT_ENCODER = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "torch_dtype": "float16",
    "transformers_version": "4.32.0.dev0",
    "vocab_size": 49408,
}

# stable-diffusion-xl-base-1.0 text_encoder_2/config.json (OpenCLIP ViT-bigG/14 text tower with its projection)
SDXL_TEXT_ENCODER_2 = {
    "architectures": ["CLIPTextModelWithProjection"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "pad_token_id": 1,
    "projection_dim": 1280,
    "torch_dtype": "float16",
    "transformers_version": "4.32.0.dev0",
    "vocab_size": 49408,
}

# Samplers: our names -> the diffusers class (and extra from_config kwargs) the goldens use.
SAMPLERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "ddim": (DDIMScheduler, {}),
}


# ---------------------------------------------------------------------------------------------------------------
# Small helpers (the same as tools/make_fixtures.py's)
# ---------------------------------------------------------------------------------------------------------------


def write_tokenizer(out_dir, num_merges, pad_token, hub_style):
    """clip_vocab's tokenizer; `hub_style` rewrites the two json files the way the SDXL hub repo has them (special
    tokens as AddedToken objects). No tokenizer.json, as in the published repo."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    n = write_clip_tokenizer(str(out_dir), num_merges, pad_token=pad_token)
    if hub_style:
        config = {
            "add_prefix_space": False,
            "bos_token": added_token("<|startoftext|>", True),
            "clean_up_tokenization_spaces": True,
            "do_lower_case": True,
            "eos_token": added_token("<|endoftext|>", True),
            "errors": "replace",
            "model_max_length": 77,
            "pad_token": pad_token,
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": added_token("<|endoftext|>", True),
        }
        special = {
            "bos_token": added_token("<|startoftext|>", False),
            "eos_token": added_token("<|endoftext|>", False),
            "pad_token": pad_token,
            "unk_token": added_token("<|endoftext|>", False),
        }
        write_json(out_dir / "tokenizer_config.json", config)
        write_json(out_dir / "special_tokens_map.json", special)
    return n


# ---------------------------------------------------------------------------------------------------------------
# Tiny models
# ---------------------------------------------------------------------------------------------------------------

# Random tiny models: default torch/transformers init, then these scales (see README-sdxl: prompt sensitivity).
TOKEN_EMBED_SCALE = 40.0  # token identity dominates; the un-normed penultimate state stays O(1)
CROSS_ATTN_QK_SCALE = 3.0  # sharper (not one-hot) attention; 6 made f32 vs f64 differ by 5e-3
CROSS_ATTN_V_SCALE = 12.0 # the text path carries weight against the residual stream

TEXT_HIDDEN_1 = 32
TEXT_HIDDEN_2 = 48
PROJECTION_DIM_2 = 40  # != hidden size, so a reader that confuses the two fails
ADDITION_TIME_EMBED_DIM = 8


def tiny_text_encoder(vocab_size, pad_id, seed):
    """text_encoder: CLIPTextModel like CLIP ViT-L (quick_gelu), 3 layers."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN_1,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=pad_id,
    )
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        model.embeddings.token_embedding.weight.mul_(TOKEN_EMBED_SCALE)
    return model


def tiny_text_encoder_2(vocab_size, pad_id, seed):
    """text_encoder_2: CLIPTextModelWithProjection like OpenCLIP bigG (gelu, projection), 4 layers."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN_2,
        intermediate_size=53,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        projection_dim=PROJECTION_DIM_2,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=pad_id,
    )
    model = CLIPTextModelWithProjection(config).eval()
    with torch.no_grad():
        model.text_model.embeddings.token_embedding.weight.mul_(TOKEN_EMBED_SCALE)
    return model


def tiny_unet(in_channels, seed):
    """SDXL's UNet structure at toy width: no attention in the first block, per-block transformer depths with a
    depth of 2 in the last block (and so in the mid block, which takes the last entry), linear projections,
    per-block head counts, and the `text_time` add-embedding."""
    torch.manual_seed(seed)
    model = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(8, 16, 32),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        transformer_layers_per_block=[1, 1, 2],
        attention_head_dim=[1, 2, 4],
        use_linear_projection=True,
        cross_attention_dim=TEXT_HIDDEN_1 + TEXT_HIDDEN_2,
        addition_embed_type="text_time",
        addition_time_embed_dim=ADDITION_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=PROJECTION_DIM_2 + 6 * ADDITION_TIME_EMBED_DIM,
    ).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("attn2"):
                module.to_q.weight.mul_(CROSS_ATTN_QK_SCALE)
                module.to_k.weight.mul_(CROSS_ATTN_QK_SCALE)
                module.to_v.weight.mul_(CROSS_ATTN_V_SCALE)
    return model


def tiny_vae(seed):
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(8, 16, 16, 16),
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=IMAGE_SIZE,
        scaling_factor=0.13025,
        force_upcast=True,
    ).eval()


# ---------------------------------------------------------------------------------------------------------------
# Writing a diffusers folder the way published checkpoints look
# ---------------------------------------------------------------------------------------------------------------


def prefix_text_model_keys(path):
    """transformers 5 saves CLIPTextModel without the `text_model.` prefix every published checkpoint has
    (CLIPTextModelWithProjection keeps it). The SDXL repos were saved by transformers 4.32, after `position_ids`
    stopped being persisted, so unlike SD 1.x/2.x no `text_model.embeddings.position_ids` is added."""
    tensors = load_file(str(path))
    out = {}
    for key, value in tensors.items():
        out[key if key.startswith(("text_model.", "text_projection.")) else "text_model." + key] = value
    save_file(dict(sorted(out.items())), str(path), metadata={"format": "pt"})


def text_encoder_keys(path):
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def scheduler_from_config(config):
    cls = {"EulerDiscreteScheduler": EulerDiscreteScheduler,
           "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler}[config["_class_name"]]
    return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


TINY_MODELS = {
    "tiny-sdxl": dict(in_channels=4, scheduler=SDXL_SCHEDULER, index_class="StableDiffusionXLPipeline"),
    "tiny-sdxl-inpaint": dict(in_channels=9, scheduler=SDXL_SCHEDULER, index_class="StableDiffusionXLInpaintPipeline"),
    "tiny-sdxl-turbo": dict(in_channels=4, scheduler=SDXL_TURBO_SCHEDULER, index_class="StableDiffusionXLPipeline"),
}
SEED = 3000  # the same seeds for every folder: text encoders and VAE are shared, turbo's UNet is tiny-sdxl's


def build_tiny_pipeline(name):
    spec = TINY_MODELS[name]
    tok_dirs = {}
    tokenizers = {}
    for key, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        tok_dirs[key] = Path("/tmp") / f"make_sdxl_fixtures_{key}_{os.getpid()}"
        vocab_size = write_tokenizer(tok_dirs[key], TINY_MERGES, pad, hub_style=False)
        tokenizers[key] = CLIPTokenizer.from_pretrained(str(tok_dirs[key]))
        shutil.rmtree(tok_dirs[key])
        assert tokenizers[key].eos_token_id == vocab_size - 1 and tokenizers[key].bos_token_id == vocab_size - 2
    assert tokenizers["tokenizer"].pad_token_id == vocab_size - 1 and tokenizers["tokenizer_2"].pad_token_id == 0
    text_encoder = tiny_text_encoder(vocab_size, tokenizers["tokenizer"].pad_token_id, SEED + 1)
    text_encoder_2 = tiny_text_encoder_2(vocab_size, tokenizers["tokenizer_2"].pad_token_id, SEED + 2)
    unet = tiny_unet(spec["in_channels"], SEED + 3)
    vae = tiny_vae(SEED + 4)
    scheduler = scheduler_from_config(spec["scheduler"])
    pipe_cls = StableDiffusionXLInpaintPipeline if spec["in_channels"] == 9 else StableDiffusionXLPipeline
    pipe = pipe_cls(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizers["tokenizer"],
        tokenizer_2=tokenizers["tokenizer_2"],
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    return pipe, pipe_cls


def write_pipeline_folder(out_dir, pipe, spec):
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    # transformers 5 writes only tokenizer.json; the published SDXL repos have the slow-tokenizer files and no
    # tokenizer.json, so both tokenizer folders are rewritten from clip_vocab (tokenizer_2 in the hub spelling).
    write_tokenizer(out_dir / "tokenizer", TINY_MERGES, "<|endoftext|>", hub_style=False)
    write_tokenizer(out_dir / "tokenizer_2", TINY_MERGES, "!", hub_style=True)
    write_json(out_dir / "scheduler" / "scheduler_config.json", spec["scheduler"])
    prefix_text_model_keys(out_dir / "text_encoder" / "model.safetensors")
    prefix_text_model_keys(out_dir / "text_encoder_2" / "model.safetensors")
    index = json.loads((out_dir / "model_index.json").read_text())
    index["_class_name"] = spec["index_class"]
    index["scheduler"] = ["diffusers", spec["scheduler"]["_class_name"]]
    index["force_zeros_for_empty_prompt"] = True
    index["add_watermarker"] = None
    if spec["index_class"] == "StableDiffusionXLInpaintPipeline":
        index["requires_aesthetics_score"] = False
    write_json(out_dir / "model_index.json", dict(sorted(index.items())))


def check_folder_loads(out_dir, pipe_cls, reference):
    """Loads the folder back with diffusers and checks every weight matches the in-memory model."""
    loaded = pipe_cls.from_pretrained(str(out_dir))
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        want = getattr(reference, name).state_dict()
        got = getattr(loaded, name).state_dict()
        assert want.keys() == got.keys(), name
        for k in want:
            assert torch.equal(want[k], got[k]), (out_dir, name, k)
    for name in ("tokenizer", "tokenizer_2"):
        a, b = getattr(reference, name), getattr(loaded, name)
        assert a.get_vocab() == b.get_vocab() and a.pad_token == b.pad_token, name
        assert not (Path(out_dir) / name / "tokenizer.json").exists()
    keys1 = text_encoder_keys(Path(out_dir) / "text_encoder" / "model.safetensors")
    keys2 = text_encoder_keys(Path(out_dir) / "text_encoder_2" / "model.safetensors")
    assert all(k.startswith("text_model.") for k in keys1), keys1[:3]
    assert all(k.startswith("text_model.") for k in keys2 if k != "text_projection.weight")
    assert "text_projection.weight" in keys2 and "text_projection.weight" not in keys1
    assert not any("position_ids" in k for k in keys1 + keys2)
    assert loaded.config.force_zeros_for_empty_prompt is True
    assert type(loaded.scheduler).__name__ == json.loads((Path(out_dir) / "scheduler" /
                                                           "scheduler_config.json").read_text())["_class_name"]
    return loaded


def write_tiny_models():
    for name, spec in TINY_MODELS.items():
        pipe, pipe_cls = build_tiny_pipeline(name)
        out = MODELS / name
        write_pipeline_folder(out, pipe, spec)
        check_folder_loads(out, pipe_cls, pipe)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"wrote {rel(out, ROOT)} ({size / 2**20:.2f} MiB)")
    # the turbo folder shares every weight file with tiny-sdxl (git stores identical blobs once)
    for sub in ("text_encoder", "text_encoder_2", "unet", "vae"):
        for f in (MODELS / "tiny-sdxl" / sub).iterdir():
            assert f.read_bytes() == (MODELS / "tiny-sdxl-turbo" / sub / f.name).read_bytes(), (sub, f.name)


# ---------------------------------------------------------------------------------------------------------------
# Component goldens: text encoders, UNet, VAE
# ---------------------------------------------------------------------------------------------------------------


def tokenize(tokenizer, prompt):
    return tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def encode_ids(pipe, ids, ids_2, clip_skip=None):
    """SDXL's encode_prompt for token ids: hidden_states[-(clip_skip + 2)] of each encoder (the penultimate by
    default, no final layer norm), concatenated on the feature axis; pooled = encoder 2's projected output."""
    index = -2 if clip_skip is None else -(clip_skip + 2)
    with torch.no_grad():
        out1 = pipe.text_encoder(ids, output_hidden_states=True)
        out2 = pipe.text_encoder_2(ids_2, output_hidden_states=True)
    context = torch.cat([out1.hidden_states[index], out2.hidden_states[index]], dim=-1)
    return context, out2.text_embeds


def encode(pipe, prompt, clip_skip=None):
    ids, ids_2 = tokenize(pipe.tokenizer, prompt), tokenize(pipe.tokenizer_2, prompt)
    context, pooled = encode_ids(pipe, ids, ids_2, clip_skip)
    return ids, ids_2, context, pooled


def text_goldens(pipe):
    ids, ids_2, prompt_embeds, pooled = encode(pipe, PROMPT)
    neg_ids, neg_ids_2, negative, negative_pooled = encode(pipe, NEGATIVE_PROMPT)
    empty_ids, empty_ids_2, empty, empty_pooled = encode(pipe, "")
    _, _, skip, skip_pooled = encode(pipe, PROMPT, clip_skip=1)
    assert torch.equal(skip_pooled, pooled)  # clip_skip never changes the pooled embedding
    # cross-check against diffusers' own encode_prompt
    with torch.no_grad():
        ref = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                                 negative_prompt=NEGATIVE_PROMPT)
        ref_skip = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                      do_classifier_free_guidance=False, clip_skip=1)
        ref_zero = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                                      negative_prompt=None)
        ref_empty = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                       do_classifier_free_guidance=True, negative_prompt="")
    assert torch.equal(ref[0], prompt_embeds) and torch.equal(ref[1], negative)
    assert torch.equal(ref[2], pooled) and torch.equal(ref[3], negative_pooled)
    assert torch.equal(ref_skip[0], skip)
    assert not ref_zero[1].any() and not ref_zero[3].any()  # negative_prompt=None: zeros (force_zeros_for_empty_prompt)
    assert torch.equal(ref_empty[1], empty) and torch.equal(ref_empty[3], empty_pooled)  # "" is encoded, not zeroed
    assert prompt_embeds.shape == (1, 77, TEXT_HIDDEN_1 + TEXT_HIDDEN_2) and pooled.shape == (1, PROJECTION_DIM_2)
    return {
        "input_ids": ids,
        "input_ids_2": ids_2,
        "negative_input_ids": neg_ids,
        "negative_input_ids_2": neg_ids_2,
        "empty_input_ids": empty_ids,
        "empty_input_ids_2": empty_ids_2,
        "prompt_embeds": prompt_embeds,
        "pooled_prompt_embeds": pooled,
        "negative_prompt_embeds": negative,
        "negative_pooled_prompt_embeds": negative_pooled,
        "empty_prompt_embeds": empty,
        "empty_pooled_prompt_embeds": empty_pooled,
        "prompt_embeds_clip_skip2": skip,
    }


UNET_TIMESTEP = 501
UNET_TIMESTEP_FRAC = 333.25


def unet_goldens(pipe, text):
    unet = pipe.unet
    dtype = unet.dtype
    g = torch.Generator("cpu").manual_seed(1234)
    c = unet.config.in_channels
    sample = torch.randn((2, c, 8, 8), generator=g, dtype=torch.float32)
    sample_odd = torch.randn((1, c, 6, 8), generator=g, dtype=torch.float32)
    ehs = torch.cat([text["negative_prompt_embeds"], text["prompt_embeds"]])
    text_embeds = torch.cat([text["negative_pooled_prompt_embeds"], text["pooled_prompt_embeds"]])
    # (original h, w, crop top, left, target h, w) as diffusers' _get_add_time_ids lays them out
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 2)
    time_ids_mixed = torch.tensor([[1024.0, 768.0, 0.0, 0.0, 1024.0, 768.0], [96.0, 64.0, 16.0, 8.0, 64.0, 48.0]])
    time_ids_odd = torch.tensor([[48.0, 64.0, 0.0, 0.0, 48.0, 64.0]])

    def call(x, t, e, te, ti):
        with torch.no_grad():
            return unet(x.to(dtype), torch.tensor(t, dtype=dtype), encoder_hidden_states=e.to(dtype),
                        added_cond_kwargs={"text_embeds": te.to(dtype), "time_ids": ti.to(dtype)}).sample

    return {
        "sample": sample,
        "timestep": torch.tensor(float(UNET_TIMESTEP)),
        "timestep_frac": torch.tensor(UNET_TIMESTEP_FRAC),
        "encoder_hidden_states": ehs,
        "text_embeds": text_embeds,
        "time_ids": time_ids,
        "time_ids_mixed": time_ids_mixed,
        "out": call(sample, float(UNET_TIMESTEP), ehs, text_embeds, time_ids),
        "out_frac": call(sample, UNET_TIMESTEP_FRAC, ehs, text_embeds, time_ids),
        "out_time_ids": call(sample, float(UNET_TIMESTEP), ehs, text_embeds, time_ids_mixed),
        "sample_odd": sample_odd,
        "encoder_hidden_states_odd": ehs[1:],
        "text_embeds_odd": text_embeds[1:],
        "time_ids_odd": time_ids_odd,
        "out_odd": call(sample_odd, float(UNET_TIMESTEP), ehs[1:], text_embeds[1:], time_ids_odd),
    }


UNET_CALLS = [
    {"sample": "sample", "timestep": "timestep", "encoder_hidden_states": "encoder_hidden_states",
     "text_embeds": "text_embeds", "time_ids": "time_ids", "out": "out"},
    {"sample": "sample", "timestep": "timestep_frac", "encoder_hidden_states": "encoder_hidden_states",
     "text_embeds": "text_embeds", "time_ids": "time_ids", "out": "out_frac"},
    {"sample": "sample", "timestep": "timestep", "encoder_hidden_states": "encoder_hidden_states",
     "text_embeds": "text_embeds", "time_ids": "time_ids_mixed", "out": "out_time_ids"},
    {"sample": "sample_odd", "timestep": "timestep", "encoder_hidden_states": "encoder_hidden_states_odd",
     "text_embeds": "text_embeds_odd", "time_ids": "time_ids_odd", "out": "out_odd"},
]


def vae_goldens(pipe, init_image):
    vae = pipe.vae
    dtype = vae.dtype
    g = torch.Generator("cpu").manual_seed(4321)
    latents = torch.randn((1, 4, 8, 8), generator=g, dtype=torch.float32) / vae.config.scaling_factor
    image = pipe.image_processor.preprocess(init_image).to(torch.float32)
    with torch.no_grad():
        decoded = vae.decode(latents.to(dtype)).sample
        dist = vae.encode(image.to(dtype)).latent_dist
    return {"latents": latents, "decoded": decoded, "image": image, "posterior_mean": dist.mean,
            "posterior_std": dist.std}


def compare_goldens(a, b):
    return {k: max_abs(a[k], b[k]) for k in a if a[k].is_floating_point()}


# ---------------------------------------------------------------------------------------------------------------
# Input images (byte-identical to tools/make_fixtures.py's golden/init.png and golden/mask.png)
# ---------------------------------------------------------------------------------------------------------------


def make_init_image():
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) / IMAGE_SIZE
    r = 0.5 + 0.45 * np.sin(2 * math.pi * (1.3 * x + 0.2))
    g = 0.5 + 0.45 * np.cos(2 * math.pi * (0.9 * y - 0.3 * x))
    b = 0.5 + 0.45 * np.sin(2 * math.pi * (0.7 * (x + y)) + 1.0)
    rgb = np.stack([r, g, b], -1)
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")


def make_mask_image():
    """White = repaint: a rectangle whose edges are off the 8-pixel latent grid, plus a disc."""
    m = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    m[13:45, 21:51] = 255
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    m[(x - 14) ** 2 + (y - 50) ** 2 <= 8**2] = 255
    return Image.fromarray(m, "L")


def load_png(path, mode):
    with Image.open(path) as im:
        return im.convert(mode).copy()


def write_inputs():
    GOLDEN.mkdir(parents=True, exist_ok=True)
    make_init_image().save(GOLDEN / "init.png", optimize=False)
    make_mask_image().save(GOLDEN / "mask.png", optimize=False)
    return GOLDEN / "init.png", GOLDEN / "mask.png"


# ---------------------------------------------------------------------------------------------------------------
# Pipeline goldens
# ---------------------------------------------------------------------------------------------------------------


def case(name, kind, sampler, steps=STEPS, guidance=GUIDANCE, width=IMAGE_SIZE, height=IMAGE_SIZE, seeds=(42,),
         strength=None, prompt=PROMPT, negative=NEGATIVE_PROMPT):
    """negative=None is diffusers' `negative_prompt=None` (zeroed negative conditioning); it is recorded as
    `"negative_prompt": ""` with `"negative_prompt_is_none": true`."""
    return {
        "name": name,
        "pipeline": kind,
        "prompt": prompt,
        "negative_prompt": "" if negative is None else negative,
        "negative_prompt_is_none": negative is None,
        "steps": steps,
        "guidance_scale": guidance,
        "width": width,
        "height": height,
        "seeds": list(seeds),
        "sampler": sampler,
        "strength": strength,
    }


def inpaint_cases():
    return [
        case(f"inpaint_{sampler}_s{int(strength * 100)}", "inpaint", sampler, strength=strength)
        for sampler in ("euler", "euler_a")
        for strength in (1.0, 0.75)
    ]


def sdxl_cases():
    cases = [case("txt2img_default", "txt2img", "default")]
    cases += [case(f"txt2img_{s}", "txt2img", s) for s in SAMPLERS]
    cases += [
        case("txt2img_no_negative", "txt2img", "default", negative=None),
        case("txt2img_cfg1", "txt2img", "default", guidance=1.0),
        case("txt2img_batch2", "txt2img", "euler_a", seeds=(7, 8)),
        case("txt2img_48x64", "txt2img", "default", width=48, height=64),
    ]
    for sampler in ("euler", "euler_a"):
        for strength in (0.3, 0.75):
            cases.append(case(f"img2img_{sampler}_s{int(strength * 100)}", "img2img", sampler, strength=strength))
    cases += inpaint_cases()
    return cases


def turbo_cases():
    return [
        case("txt2img_1step", "txt2img", "default", steps=1, guidance=0.0),
        case("txt2img_4step", "txt2img", "default", steps=4, guidance=0.0),
        case("txt2img_4step_batch2", "txt2img", "default", steps=4, guidance=0.0, seeds=(7, 8)),
        case("img2img_2step_s50", "img2img", "default", steps=2, guidance=0.0, strength=0.5),
    ]


PIPELINE_CLASSES = {
    "txt2img": StableDiffusionXLPipeline,
    "img2img": StableDiffusionXLImg2ImgPipeline,
    "inpaint": StableDiffusionXLInpaintPipeline,
}
COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")


def load_pipelines(model_dir, dtype):
    """One loaded set of components shared by the three pipeline classes, with the config flags the folder's
    model_index.json gives (img2img/inpaint take requires_aesthetics_score=False, their default)."""
    index = json.loads((Path(model_dir) / "model_index.json").read_text())
    cls = {"StableDiffusionXLPipeline": StableDiffusionXLPipeline,
           "StableDiffusionXLInpaintPipeline": StableDiffusionXLInpaintPipeline}[index["_class_name"]]
    base = cls.from_pretrained(str(model_dir)).to(dtype)
    out = {}
    for kind, pipe_cls in PIPELINE_CLASSES.items():
        kwargs = dict(force_zeros_for_empty_prompt=index["force_zeros_for_empty_prompt"], add_watermarker=False)
        if kind != "txt2img":
            kwargs["requires_aesthetics_score"] = index.get("requires_aesthetics_score", False)
        p = pipe_cls(**{k: getattr(base, k) for k in COMPONENTS}, **kwargs)
        p.set_progress_bar_config(disable=True)
        assert p.watermark is None
        out[kind] = p
    return out


class RandnRecorder:
    """Logs every randn_tensor call diffusers makes during a pipeline call (who asked and for what shape), so the
    Rust side can reproduce the order of draws from each seed's generator. With a list of generators,
    randn_tensor draws one [1, ...] slice of the shape from each generator in turn."""

    def __init__(self):
        self.original = diffusers_torch_utils.randn_tensor
        self.patched = []
        self.draws = []

    def _randn(self, shape, generator=None, device=None, dtype=None, layout=None):
        caller = sys._getframe(1).f_code.co_qualname
        entry = {"by": caller, "shape": [int(v) for v in shape]}
        if self.draws and {k: self.draws[-1][k] for k in entry} == entry:
            self.draws[-1]["count"] += 1
        else:
            self.draws.append({**entry, "count": 1})
        return self.original(shape, generator=generator, device=device, dtype=dtype, layout=layout)

    def __enter__(self):
        for name, mod in list(sys.modules.items()):
            if name.startswith("diffusers") and getattr(mod, "randn_tensor", None) is self.original:
                mod.randn_tensor = self._randn
                self.patched.append(mod)
        return self

    def __exit__(self, *exc):
        for mod in self.patched:
            mod.randn_tensor = self.original
        self.patched = []


class UnetRecorder:
    """Records what each pipeline call hands the UNet: timesteps and the added conditions (time ids)."""

    def __init__(self, unet):
        self.calls = []
        self.handle = unet.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        added = kwargs["added_cond_kwargs"]
        self.calls.append({"timestep": float(t), "time_ids": added["time_ids"].detach().double().clone(),
                           "batch": int(added["text_embeds"].shape[0])})
        return None

    def close(self):
        self.handle.remove()


def pipeline_kwargs(c, init_image, mask_image, embeds=None):
    n = len(c["seeds"])
    kwargs = dict(
        num_inference_steps=c["steps"],
        guidance_scale=c["guidance_scale"],
        generator=[torch.Generator("cpu").manual_seed(s) for s in c["seeds"]],
        output_type="np",
    )
    if embeds is None:
        kwargs["prompt"] = [c["prompt"]] * n
        kwargs["negative_prompt"] = None if c["negative_prompt_is_none"] else [c["negative_prompt"]] * n
    else:
        context, pooled, neg_context, neg_pooled = embeds
        kwargs.update(prompt_embeds=context.repeat(n, 1, 1), pooled_prompt_embeds=pooled.repeat(n, 1),
                      negative_prompt_embeds=neg_context.repeat(n, 1, 1),
                      negative_pooled_prompt_embeds=neg_pooled.repeat(n, 1))
    if c["pipeline"] == "txt2img":
        kwargs.update(width=c["width"], height=c["height"])
    elif c["pipeline"] == "img2img":
        kwargs.update(image=init_image, strength=c["strength"])
    else:
        kwargs.update(image=init_image, mask_image=mask_image, strength=c["strength"], width=c["width"],
                      height=c["height"])
    return kwargs


def run_case(pipes, c, init_image, mask_image, embeds=None):
    pipe = pipes[c["pipeline"]]
    original = pipe.scheduler
    set_sampler(pipe, c["sampler"])
    recorder = UnetRecorder(pipe.unet)
    draws = RandnRecorder()
    try:
        with torch.no_grad(), draws:
            images = pipe(**pipeline_kwargs(c, init_image, mask_image, embeds)).images
    finally:
        recorder.close()
    config = dict(pipe.scheduler.config)
    scheduler_class = type(pipe.scheduler).__name__
    pipe.scheduler = original
    return images, config, scheduler_class, (recorder.calls, draws.draws)


def effective_scheduler_config(config):
    return {k: v for k, v in sorted(config.items()) if not k.startswith("_")}


def conditioning_record(c, calls, pipe):
    """The size conditioning diffusers used, read back from what reached the UNet."""
    guided = c["guidance_scale"] > 1.0
    n = len(c["seeds"])
    first = calls[0]
    assert first["batch"] == (2 * n if guided else n), (c["name"], first["batch"])
    rows = first["time_ids"]
    positive = [int(v) for v in rows[-1].tolist()]
    negative = [int(v) for v in rows[0].tolist()] if guided else None
    for call in calls:  # constant over the steps, every row the same in these cases
        assert torch.equal(call["time_ids"], rows)
        assert all(torch.equal(r, rows[0]) for r in rows)
    assert positive == [c["height"], c["width"], 0, 0, c["height"], c["width"]], (c["name"], positive)
    record = {
        "original_size": positive[0:2],
        "crops_coords_top_left": positive[2:4],
        "target_size": positive[4:6],
        "add_time_ids": positive,
        "negative_add_time_ids": negative,
        "unet_timesteps": [call["timestep"] for call in calls],
        "unet_batch": first["batch"],
    }
    if c["pipeline"] != "txt2img":
        record["requires_aesthetics_score"] = bool(pipe.config.requires_aesthetics_score)
    return record


def one_token_sensitivity(pipes, c, init_image, mask_image):
    """Max |pixel change| (in 1/255) when one prompt token (position 5, in both tokenizers' ids) is swapped."""
    pipe = pipes[c["pipeline"]]
    ids, ids_2 = tokenize(pipe.tokenizer, c["prompt"]), tokenize(pipe.tokenizer_2, c["prompt"])
    assert torch.equal(ids[0, :10], ids_2[0, :10])
    other, other_2 = ids.clone(), ids_2.clone()
    new = (int(ids[0, 5]) + 137) % (pipe.tokenizer.vocab_size - 2)
    other[0, 5] = new
    other_2[0, 5] = new
    _, _, neg, neg_pooled = encode(pipe, c["negative_prompt"])
    a = encode_ids(pipe, ids, ids_2)
    b = encode_ids(pipe, other, other_2)
    img_a, *_ = run_case(pipes, c, init_image, mask_image, embeds=(*a, neg, neg_pooled))
    img_b, *_ = run_case(pipes, c, init_image, mask_image, embeds=(*b, neg, neg_pooled))
    return img_a, max_abs(img_a, img_b) * 255


def save_image_golden(out_dir, name, images):
    save_tensors(out_dir / f"{name}.safetensors", {"images": torch.from_numpy(np.ascontiguousarray(images))})
    Image.fromarray((images[0] * 255).round().astype("uint8")).save(out_dir / f"{name}.png", optimize=False)


DIFFUSERS_DEFAULTS = {
    "text_hidden_state": "hidden_states[-2] of both encoders (penultimate layer, no final_layer_norm); "
                         "clip_skip=k (diffusers) takes hidden_states[-(k + 2)]",
    "clip_skip_applies_to_negative": False,
    "pooled": "text_encoder_2 text_embeds: text_projection(final_layer_norm(last hidden state) at the first "
              "<|endoftext|>), never affected by clip_skip",
    "context_concat_order": ["text_encoder", "text_encoder_2"],
    "force_zeros_for_empty_prompt": "only when negative_prompt is None (an explicit \"\" is encoded); zeros for "
                                    "both negative_prompt_embeds and negative_pooled_prompt_embeds",
    "cfg_batch_order": "negative first: [negative x B, positive x B] for context, text_embeds and time_ids",
    "do_classifier_free_guidance": "guidance_scale > 1",
    "add_time_ids": "[original_h, original_w, crop_top, crop_left, target_h, target_w]",
    "original_size": "(height, width) of the output",
    "target_size": "(height, width) of the output",
    "crops_coords_top_left": [0, 0],
    "negative_size_conditioning": "the positive one unless negative_original_size/target_size are given",
    "img2img_size": "from the init image (rounded down to a multiple of 8), not from width/height arguments",
    "requires_aesthetics_score": False,
    "aesthetic_score": 6.0,
    "negative_aesthetic_score": 2.5,
    "img2img_default_strength": 0.3,
    "inpaint_default_strength": 0.9999,
    "default_guidance_scale": {"txt2img": 5.0, "img2img": 5.0, "inpaint": 7.5},
    "default_size": "unet.config.sample_size * 8",
    "vae_force_upcast": "vae.config.force_upcast and the VAE is f16: decode (and img2img/inpaint encode) in f32",
    "watermark": "none (invisible-watermark not installed; add_watermarker=False)",
}


def write_model_goldens(name, model_dir, cases, init_png, mask_png, with_pipelines, sensitivity_cases):
    out_dir = GOLDEN / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    init_image = load_png(init_png, "RGB")
    mask_image = load_png(mask_png, "L")
    p32 = load_pipelines(model_dir, torch.float32)
    p64 = load_pipelines(model_dir, torch.float64)
    any32 = p32["txt2img"]
    any64 = p64["txt2img"]

    doc = {
        "model": name,
        "model_dir": rel(model_dir, out_dir),
        "init_image": rel(init_png, out_dir),
        "mask_image": rel(mask_png, out_dir),
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE_PROMPT,
        "force_zeros_for_empty_prompt": bool(any32.config.force_zeros_for_empty_prompt),
        "diffusers_defaults": DIFFUSERS_DEFAULTS,
    }

    text32, text64 = text_goldens(any32), text_goldens(any64)
    save_tensors(out_dir / "text_embeds.safetensors", text32)
    doc["text"] = {
        "file": "text_embeds.safetensors",
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE_PROMPT,
        "empty_prompt": "",
        "clip_skip": {"prompt_embeds_clip_skip2": 2},
        "diffusers_clip_skip": {"prompt_embeds_clip_skip2": 1},
        "hidden_sizes": [TEXT_HIDDEN_1, TEXT_HIDDEN_2],
        "projection_dim": PROJECTION_DIM_2,
        "f64_max_abs_diff": compare_goldens(text32, text64),
    }

    unet32 = unet_goldens(any32, text32)
    unet64 = unet_goldens(any64, text32)
    save_tensors(out_dir / "unet.safetensors", unet32)
    doc["unet"] = {
        "file": "unet.safetensors",
        "timestep": UNET_TIMESTEP,
        "timestep_frac": UNET_TIMESTEP_FRAC,
        "calls": UNET_CALLS,
        "f64_max_abs_diff": {k: v for k, v in compare_goldens(unet32, unet64).items() if k.startswith("out")},
    }

    vae32, vae64 = vae_goldens(any32, init_image), vae_goldens(any64, init_image)
    save_tensors(out_dir / "vae.safetensors", vae32)
    doc["vae"] = {
        "file": "vae.safetensors",
        "scaling_factor": any32.vae.config.scaling_factor,
        "force_upcast": bool(any32.vae.config.force_upcast),
        "f64_max_abs_diff": {k: v for k, v in compare_goldens(vae32, vae64).items() if k not in ("latents", "image")},
    }
    for part in ("text", "unet", "vae"):
        worst = max(doc[part]["f64_max_abs_diff"].values())
        print(f"  {name} {part}: f32 vs f64 max abs diff {worst:.2e}")
        assert worst < 1e-3, (name, part, worst)

    doc["cases"] = []
    if with_pipelines:
        worst = 0.0
        for c in cases:
            img32, config, scheduler_class, calls = run_case(p32, c, init_image, mask_image)
            with RandnInF32():
                img64, *_ = run_case(p64, c, init_image, mask_image)
            diff = max_abs(img32, img64) * 255
            worst = max(worst, diff)
            assert diff < 1.0, (name, c["name"], diff)
            save_image_golden(out_dir, c["name"], img32)
            entry = dict(c)
            entry.update(
                file=f"{c['name']}.safetensors",
                png=f"{c['name']}.png",
                scheduler_class=scheduler_class,
                scheduler_extra=SAMPLERS[c["sampler"]][1] if c["sampler"] != "default" else {},
                scheduler_config=effective_scheduler_config(config),
                f64_max_abs_diff_255=round(diff, 6),
                shape=list(img32.shape),
            )
            unet_calls, draws = calls
            entry.update(conditioning_record(c, unet_calls, p32[c["pipeline"]]))
            entry["random_draws"] = draws
            doc["cases"].append(entry)
            print(f"  {name} {c['name']}: f32 vs f64 max {diff:.4f}/255, unet timesteps {entry['unet_timesteps']}")
        print(f"  {name}: worst pipeline f32 vs f64 {worst:.4f}/255")
        doc["f64_max_abs_diff_255_worst"] = round(worst, 6)

    doc["prompt_sensitivity_255"] = {}
    for c in sensitivity_cases:
        img, s = one_token_sensitivity(p32, c, init_image, mask_image)
        if with_pipelines and c["name"] in {x["name"] for x in cases}:
            # prompt embeddings computed here reproduce the golden made from the prompt string
            golden = load_file(str(out_dir / f"{c['name']}.safetensors"))["images"]
            assert max_abs(img, golden) * 255 < 1e-3, (name, c["name"])
        doc["prompt_sensitivity_255"][c["name"]] = round(s, 3)
        print(f"  {name} {c['name']}: one-token prompt change moves pixels by up to {s:.1f}/255")
        assert s >= 20.0, (name, c["name"], s)
    write_json(out_dir / "cases.json", doc)


def write_all_goldens(with_pipelines):
    init_png, mask_png = write_inputs()
    sdxl = sdxl_cases()
    by_name = {c["name"]: c for c in sdxl}
    write_model_goldens("tiny-sdxl", MODELS / "tiny-sdxl", sdxl, init_png, mask_png, with_pipelines,
                        [by_name["txt2img_default"], by_name["txt2img_cfg1"], by_name["img2img_euler_a_s75"],
                         by_name["inpaint_euler_a_s75"]])
    inp = inpaint_cases()
    write_model_goldens("tiny-sdxl-inpaint", MODELS / "tiny-sdxl-inpaint", inp, init_png, mask_png, with_pipelines,
                        [inp[0]])
    turbo = turbo_cases()
    write_model_goldens("tiny-sdxl-turbo", MODELS / "tiny-sdxl-turbo", turbo, init_png, mask_png, with_pipelines,
                        [turbo[0], turbo[1]])


# ---------------------------------------------------------------------------------------------------------------
# Full-size random checkpoint (not committed)
# ---------------------------------------------------------------------------------------------------------------


def hf_text_config(spec):
    return CLIPTextConfig(**{k: v for k, v in spec.items()
                             if k not in ("architectures", "torch_dtype", "transformers_version")})


def write_full_size(out_root):
    """OUT/sdxl: stable-diffusion-xl-base-1.0's configs and published key names, random f16 weights, the full CLIP
    vocabulary in both tokenizers (tokenizer_2 pads with `!`)."""
    out = Path(out_root) / "sdxl"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(7100)
    write_json(out / "model_index.json", SDXL_MODEL_INDEX)
    write_json(out / "scheduler" / "scheduler_config.json", SDXL_SCHEDULER)
    write_tokenizer(out / "tokenizer", None, "<|endoftext|>", hub_style=True)
    write_tokenizer(out / "tokenizer_2", None, "!", hub_style=True)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # build in f16: the f32 UNet alone would take 10 GB
    try:
        unet = UNet2DConditionModel.from_config(SDXL_UNET)
        unet.save_pretrained(str(out / "unet"), safe_serialization=True, max_shard_size="20GB")
        del unet
        gc.collect()
        write_json(out / "unet" / "config.json", SDXL_UNET)
        vae = AutoencoderKL.from_config(SDXL_VAE)
        vae.save_pretrained(str(out / "vae"), safe_serialization=True)
        del vae
        write_json(out / "vae" / "config.json", SDXL_VAE)
        for sub, spec, cls in (("text_encoder", SDXL_TEXT_ENCODER, CLIPTextModel),
                               ("text_encoder_2", SDXL_TEXT_ENCODER_2, CLIPTextModelWithProjection)):
            te = cls(hf_text_config(spec))
            te.save_pretrained(str(out / sub), safe_serialization=True)
            del te
            write_json(out / sub / "config.json", spec)
            prefix_text_model_keys(out / sub / "model.safetensors")
        gc.collect()
    finally:
        torch.set_default_dtype(previous)

    keys1 = text_encoder_keys(out / "text_encoder" / "model.safetensors")
    keys2 = text_encoder_keys(out / "text_encoder_2" / "model.safetensors")
    assert len(keys1) == 196 and len(keys2) == 517, (len(keys1), len(keys2))  # as the published files
    assert "text_projection.weight" in keys2 and all(k.startswith("text_model.") for k in keys1)
    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        unet_keys = list(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in unet_keys}
    assert dtypes == {"F16"}, dtypes
    print(f"sdxl: unet {len(unet_keys)} tensors, text_encoder {len(keys1)}, text_encoder_2 {len(keys2)}")

    loaded = StableDiffusionXLPipeline.from_pretrained(str(out), torch_dtype=torch.float16)
    assert loaded.tokenizer.pad_token == "<|endoftext|>" and loaded.tokenizer_2.pad_token == "!"
    assert len(loaded.tokenizer) == 49408 and len(loaded.tokenizer_2) == 49408
    assert loaded.tokenizer_2.pad_token_id == 0
    assert loaded.unet.config.cross_attention_dim == 768 + 1280
    assert loaded.unet.add_embedding.linear_1.in_features == 1280 + 6 * 256
    assert loaded.config.force_zeros_for_empty_prompt is True and loaded.vae.config.force_upcast is True
    counts = {k: sum(p.numel() for p in getattr(loaded, k).parameters())
              for k in ("text_encoder", "text_encoder_2", "unet", "vae")}
    del loaded
    gc.collect()
    print(f"sdxl: loads in diffusers; parameters {counts}")
    for sub in ("text_encoder", "text_encoder_2", "unet", "vae", "tokenizer", "tokenizer_2", "scheduler"):
        size = sum(p.stat().st_size for p in (out / sub).iterdir())
        print(f"  sdxl/{sub}: {size / 2**20:.1f} MiB")


# ---------------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", metavar="OUT_DIR", help="write the SDXL base architecture with random weights")
    parser.add_argument("--models-only", action="store_true", help="skip the full-pipeline goldens")
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    if args.full_size:
        write_full_size(args.full_size)
        return
    write_tiny_models()
    write_all_goldens(with_pipelines=not args.models_only)
    total = sum(p.stat().st_size for d in ("models", "golden") for p in (FIXTURES / d).rglob("*")
                if p.is_file() and "sdxl" in str(p))
    print(f"tests/fixtures (sdxl files): {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
