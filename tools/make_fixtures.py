#!/usr/bin/env python3
"""Writes the tiny Stable Diffusion fixtures and the diffusers goldens the Rust tests compare against.

    python3 tools/make_fixtures.py                      # tests/fixtures/models/** and tests/fixtures/golden/**
    python3 tools/make_fixtures.py --models-only        # only the model folders (+ text/unet/vae goldens)
    python3 tools/make_fixtures.py --full-size OUT_DIR  # OUT_DIR/sd15, OUT_DIR/sd21: real shapes, random weights

Everything is deterministic (fixed seeds, fixed thread count): re-running rewrites identical files.
tests/fixtures/README.md describes the layout (the contract with the Rust tests).
"""

import argparse
import copy
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
from clip_vocab import write_clip_tokenizer  # noqa: E402

import diffusers  # noqa: E402
import diffusers.utils.torch_utils as diffusers_torch_utils  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

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

# ---------------------------------------------------------------------------------------------------------------
# Published configs, written byte-for-byte semantically as the hub repos have them. Keys a file lacks take the
# class defaults in diffusers' from_config, so these are the configs whose *absence* of keys matters too.
# ---------------------------------------------------------------------------------------------------------------

SCALED_LINEAR = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085}

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    **SCALED_LINEAR,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# runwayml/stable-diffusion-inpainting scheduler/scheduler_config.json
SD15_INPAINT_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.6.0.dev0",
    **SCALED_LINEAR,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}

# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json
SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    **SCALED_LINEAR,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

# runwayml/stable-diffusion-v1-5 unet/config.json
SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": SD_DOWN,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": SD_UP,
}

# stabilityai/stable-diffusion-2-1 unet/config.json
SD21_UNET = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.10.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": SD_DOWN,
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": SD_UP,
    "use_linear_projection": True,
    "upcast_attention": True,
}

SD_VAE_COMMON = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
}
# runwayml/stable-diffusion-v1-5 vae/config.json (scaling_factor was added to the repo later)
SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.6.0",
    **{k: v for k, v in SD_VAE_COMMON.items() if k != "_class_name"},
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# stabilityai/stable-diffusion-2-1 vae/config.json (no scaling_factor: the 0.18215 default applies)
SD21_VAE = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.10.0.dev0",
    **{k: v for k, v in SD_VAE_COMMON.items() if k != "_class_name"},
    "sample_size": 768,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# runwayml/stable-diffusion-v1-5 text_encoder/config.json. Note the token ids: 0/2/1 are wrong for CLIP's vocab
# (bos 49406, eos/pad 49407); every SD 1.x/2.x checkpoint carries them, so readers must take ids from the tokenizer.
SD15_TEXT_ENCODER = {
    "_name_or_path": "openai/clip-vit-large-patch14",
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
    "torch_dtype": "float32",
    "transformers_version": "4.22.0.dev0",
    "vocab_size": 49408,
}
# stabilityai/stable-diffusion-2-1 text_encoder/config.json (OpenCLIP ViT-H text tower minus its last layer)
SD21_TEXT_ENCODER = {
    "_name_or_path": "hf-models/stable-diffusion-v2-768x768/text_encoder",
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "pad_token_id": 1,
    "projection_dim": 512,
    "torch_dtype": "float32",
    "transformers_version": "4.25.0.dev0",
    "vocab_size": 49408,
}

SD21_TOKENIZER_NAME = "hf-models/stable-diffusion-v2-768x768/tokenizer"

SD15_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPFeatureExtractor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SD21_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.10.0.dev0",
    "feature_extractor": ["transformers", "CLIPFeatureExtractor"],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
# feature_extractor/preprocessor_config.json of both repos (only the safety checker uses it)
CLIP_PREPROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}

# ---------------------------------------------------------------------------------------------------------------
# Samplers: our names -> the diffusers class (and extra from_config kwargs) the goldens use.
# ---------------------------------------------------------------------------------------------------------------

SAMPLERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "unipc": (UniPCMultistepScheduler, {}),
    "lcm": (LCMScheduler, {}),
}


def set_sampler(pipe, sampler):
    if sampler == "default":
        return
    cls, extra = SAMPLERS[sampler]
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **extra)


# ---------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------


def _finite(obj):
    """JSON has no infinities (diffusers configs hold -inf, e.g. lambda_min_clipped): write them as strings."""
    if isinstance(obj, float) and obj != obj or isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_finite(obj), f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")


def save_tensors(path, tensors):
    """float tensors as contiguous f32, integer ones as i64."""
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        v = v.to(torch.int64) if not v.is_floating_point() else v.to(torch.float32)
        out[k] = v.contiguous().clone()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata={"format": "pt"})


def max_abs(a, b):
    a = a.detach().double() if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a, dtype=np.float64))
    b = b.detach().double() if isinstance(b, torch.Tensor) else torch.from_numpy(np.asarray(b, dtype=np.float64))
    return float((a - b).abs().max())


def rel(path, start):
    return os.path.relpath(path, start)


class RandnInF32:
    """diffusers draws noise with `torch.randn(..., dtype=model_dtype)`; a float64 run would draw *different*
    numbers. For the f64 reference runs we draw in f32 (what the f32 run and the Rust side draw) and cast."""

    def __init__(self):
        self.original = diffusers_torch_utils.randn_tensor
        self.patched = []

    def _randn(self, shape, generator=None, device=None, dtype=None, layout=None):
        return self.original(shape, generator=generator, device=device, dtype=torch.float32, layout=layout).to(dtype)

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


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer files
# ---------------------------------------------------------------------------------------------------------------


def added_token(content, with_type):
    tok = {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    return {"__type": "AddedToken", **tok} if with_type else tok


def write_tokenizer(out_dir, num_merges, pad_token, hub_style, name_or_path=None):
    """clip_vocab's tokenizer; `hub_style` rewrites the two json files the way the SD 1.5 / 2.1 hub repos have
    them (special tokens as AddedToken objects), so both spellings are covered."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    n = write_clip_tokenizer(str(out_dir), num_merges, pad_token=pad_token)
    if hub_style:
        config = {
            "add_prefix_space": False,
            "bos_token": added_token("<|startoftext|>", True),
            "do_lower_case": True,
            "eos_token": added_token("<|endoftext|>", True),
            "errors": "replace",
            "model_max_length": 77,
            "name_or_path": name_or_path or "openai/clip-vit-large-patch14",
            "pad_token": pad_token,
            "special_tokens_map_file": "./special_tokens_map.json",
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

# Random tiny models: default torch/transformers init, then these scales (see README: prompt sensitivity):
#   token: token embeddings, so token identity dominates the position embedding;
#   qk:    the UNet's cross-attention to_q/to_k, for sharper (not one-hot) attention over the 77 text tokens;
#   v:     the UNet's cross-attention to_v, so the text path carries weight against the residual stream.
# Larger q/k scales make the SD2-style model chaotic (f32 and f64 runs part), hence its smaller ones.
SD1_SCALES = {"token": 8.0, "qk": 6.0, "v": 6.0}
SD2_SCALES = {"token": 8.0, "qk": 4.0, "v": 4.0}


def tiny_text_encoder(vocab_size, pad_id, sd2, seed, scales):
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu" if sd2 else "quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=pad_id,
    )
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        model.embeddings.token_embedding.weight.mul_(scales["token"])
    return model


def tiny_unet(sd2, in_channels, seed, scales):
    torch.manual_seed(seed)
    kwargs = dict(
        sample_size=IMAGE_SIZE // 8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 32, 32),
        norm_num_groups=8,
        cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
    )
    if sd2:
        kwargs.update(attention_head_dim=[2, 4, 4], use_linear_projection=True, upcast_attention=True)
    else:
        kwargs.update(attention_head_dim=2, use_linear_projection=False)
    model = UNet2DConditionModel(**kwargs).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("attn2"):
                module.to_q.weight.mul_(scales["qk"])
                module.to_k.weight.mul_(scales["qk"])
                module.to_v.weight.mul_(scales["v"])
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
        scaling_factor=0.18215,
    ).eval()


# ---------------------------------------------------------------------------------------------------------------
# Writing a diffusers folder the way published checkpoints look
# ---------------------------------------------------------------------------------------------------------------


def prefix_text_model_keys(path):
    """transformers 5 saves CLIPTextModel without the `text_model.` prefix every published SD checkpoint has, and
    without the `position_ids` buffer that transformers < 4.31 persisted (published SD 1.x/2.x files carry it)."""
    tensors = load_file(str(path))
    out = {}
    for key, value in tensors.items():
        out[key if key.startswith("text_model.") else "text_model." + key] = value
    out["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64).unsqueeze(0)
    save_file(dict(sorted(out.items())), str(path), metadata={"format": "pt"})


def save_text_encoder_f16(text_encoder, out_dir, tmp_dir):
    """text_encoder/model.fp16.safetensors as `save_pretrained(variant="fp16")` of the half model names it; the
    f32 config.json stays (the published repos keep one config for both files)."""
    tmp = Path(tmp_dir)
    half = copy.deepcopy(text_encoder).to(torch.float16)
    half.save_pretrained(str(tmp), safe_serialization=True, variant="fp16")
    files = sorted(p.name for p in tmp.glob("*.safetensors"))
    assert files == ["model.fp16.safetensors"], files
    shutil.move(str(tmp / files[0]), str(Path(out_dir) / files[0]))
    shutil.rmtree(tmp)
    prefix_text_model_keys(Path(out_dir) / "model.fp16.safetensors")


def write_pipeline_folder(out_dir, pipe, scheduler_config, pad_token, hub_style_tokenizer, model_index_class,
                          tokenizer_name=None):
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)
    # transformers 5 writes only tokenizer.json; published SD repos have the slow-tokenizer files and no
    # tokenizer.json, so the tokenizer folder is rewritten from clip_vocab.
    write_tokenizer(out_dir / "tokenizer", TINY_MERGES, pad_token, hub_style_tokenizer, tokenizer_name)
    write_json(out_dir / "scheduler" / "scheduler_config.json", scheduler_config)
    prefix_text_model_keys(out_dir / "text_encoder" / "model.safetensors")
    index = json.loads((out_dir / "model_index.json").read_text())
    index["_class_name"] = model_index_class
    index["scheduler"] = ["diffusers", scheduler_config["_class_name"]]
    write_json(out_dir / "model_index.json", index)


def text_encoder_keys(path):
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def check_folder_loads(out_dir, pipe_cls, reference, variant=None):
    """Loads the folder back with diffusers and checks every weight matches the in-memory model."""
    loaded = pipe_cls.from_pretrained(str(out_dir), safety_checker=None, variant=variant)
    for name in ("text_encoder", "unet", "vae"):
        want = getattr(reference, name).state_dict()
        got = getattr(loaded, name).state_dict()
        assert want.keys() == got.keys(), name
        for k in want:
            tol = 0 if variant is None or name == "unet" else 1e-3 * (1 + want[k].abs().max().item())
            diff = (want[k].double() - got[k].double()).abs().max().item() if want[k].numel() else 0
            assert diff <= tol, (out_dir, name, k, diff)
    keys = text_encoder_keys(Path(out_dir) / "text_encoder" / "model.safetensors")
    assert all(k.startswith("text_model.") for k in keys), keys[:3]
    assert not (Path(out_dir) / "tokenizer" / "tokenizer.json").exists()
    return loaded


TINY_MODELS = {
    "tiny-sd1": dict(sd2=False, in_channels=4, scheduler=SD15_SCHEDULER, pad="<|endoftext|>", hub_tok=False,
                     index_class="StableDiffusionPipeline", seed=1000),
    "tiny-sd1-inpaint": dict(sd2=False, in_channels=9, scheduler=SD15_INPAINT_SCHEDULER, pad="<|endoftext|>",
                             hub_tok=False, index_class="StableDiffusionInpaintPipeline", seed=1000),
    "tiny-sd2": dict(sd2=True, in_channels=4, scheduler=SD21_SCHEDULER, pad="!", hub_tok=True,
                     index_class="StableDiffusionPipeline", seed=2000),
}


def build_tiny_pipeline(name):
    spec = TINY_MODELS[name]
    tok_dir = Path("/tmp") / f"make_fixtures_tok_{os.getpid()}"
    vocab_size = write_tokenizer(tok_dir, TINY_MERGES, spec["pad"], spec["hub_tok"])
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    shutil.rmtree(tok_dir)
    pad_id = tokenizer.pad_token_id
    assert tokenizer.eos_token_id == vocab_size - 1 and tokenizer.bos_token_id == vocab_size - 2
    seed = spec["seed"]
    scales = SD2_SCALES if spec["sd2"] else SD1_SCALES
    text_encoder = tiny_text_encoder(vocab_size, pad_id, spec["sd2"], seed + 1, scales)
    unet = tiny_unet(spec["sd2"], spec["in_channels"], seed + 2, scales)
    vae = tiny_vae(seed + 3)
    scheduler_cls = {"PNDMScheduler": PNDMScheduler, "DDIMScheduler": DDIMScheduler}[spec["scheduler"]["_class_name"]]
    scheduler = scheduler_cls.from_config({k: v for k, v in spec["scheduler"].items() if not k.startswith("_")})
    pipe_cls = StableDiffusionInpaintPipeline if spec["in_channels"] == 9 else StableDiffusionPipeline
    pipe = pipe_cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe, pipe_cls


def write_tiny_models():
    pipes = {}
    for name, spec in TINY_MODELS.items():
        pipe, pipe_cls = build_tiny_pipeline(name)
        out = MODELS / name
        write_pipeline_folder(out, pipe, spec["scheduler"], spec["pad"], spec["hub_tok"], spec["index_class"],
                              SD21_TOKENIZER_NAME if spec["sd2"] else None)
        check_folder_loads(out, pipe_cls, pipe)
        pipes[name] = pipe
        print(f"wrote {rel(out, ROOT)}")
    write_variants_folder(pipes["tiny-sd1"])
    return pipes


def write_variants_folder(pipe):
    """tiny-sd1's weights with a sharded UNet and fp16 variants of the VAE and text encoder."""
    src = MODELS / "tiny-sd1"
    out = MODELS / "tiny-sd1-variants"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    (out / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    pipe.unet.save_pretrained(str(out / "unet"), safe_serialization=True, max_shard_size="600KB")
    shards = sorted(p.name for p in (out / "unet").glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) >= 3 and (out / "unet" / "diffusion_pytorch_model.safetensors.index.json").exists(), shards
    copy.deepcopy(pipe.vae).to(torch.float16).save_pretrained(
        str(out / "vae"), safe_serialization=True, variant="fp16"
    )
    assert (out / "vae" / "diffusion_pytorch_model.fp16.safetensors").exists()
    save_text_encoder_f16(pipe.text_encoder, out / "text_encoder", Path("/tmp") / f"make_fixtures_te_{os.getpid()}")
    # the half model's config.json must not replace the f32 one
    shutil.copy(src / "vae" / "config.json", out / "vae" / "config.json")
    shutil.copy(src / "text_encoder" / "config.json", out / "text_encoder" / "config.json")
    check_folder_loads(out, StableDiffusionPipeline, pipe)
    check_folder_loads(out, StableDiffusionPipeline, pipe, variant="fp16")
    print(f"wrote {rel(out, ROOT)}: unet shards {shards}")


# ---------------------------------------------------------------------------------------------------------------
# Component goldens: text encoder, UNet, VAE
# ---------------------------------------------------------------------------------------------------------------


def encode(pipe, prompt, clip_skip=None):
    """diffusers' encode_prompt for one prompt. clip_skip is computed as encode_prompt does it
    (hidden_states[-(clip_skip + 1)] -> final_layer_norm); encode_prompt itself reaches for
    `text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has."""
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        if clip_skip is None:
            return ids, pipe.text_encoder(ids)[0]
        out = pipe.text_encoder(ids, output_hidden_states=True)
        return ids, pipe.text_encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)])


def text_goldens(pipe):
    ids, prompt_embeds = encode(pipe, PROMPT)
    neg_ids, negative = encode(pipe, NEGATIVE_PROMPT)
    empty_ids, empty = encode(pipe, "")
    _, skip = encode(pipe, PROMPT, clip_skip=1)
    # cross-check against diffusers' own encode_prompt for the cases it can still compute
    ref, ref_neg = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE_PROMPT)
    assert torch.equal(ref, prompt_embeds) and torch.equal(ref_neg, negative)
    return {
        "input_ids": ids,
        "negative_input_ids": neg_ids,
        "empty_input_ids": empty_ids,
        "prompt_embeds": prompt_embeds,
        "negative_prompt_embeds": negative,
        "empty_prompt_embeds": empty,
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
    ehs = torch.cat([text["negative_prompt_embeds"], text["prompt_embeds"]]).to(dtype)
    with torch.no_grad():
        out = unet(sample.to(dtype), torch.tensor(float(UNET_TIMESTEP), dtype=dtype), encoder_hidden_states=ehs).sample
        out_frac = unet(sample.to(dtype), torch.tensor(UNET_TIMESTEP_FRAC, dtype=dtype), encoder_hidden_states=ehs).sample
        out_odd = unet(
            sample_odd.to(dtype), torch.tensor(float(UNET_TIMESTEP), dtype=dtype), encoder_hidden_states=ehs[1:]
        ).sample
    return {
        "sample": sample,
        "timestep": torch.tensor(float(UNET_TIMESTEP)),
        "timestep_frac": torch.tensor(UNET_TIMESTEP_FRAC),
        "encoder_hidden_states": ehs,
        "out": out,
        "out_frac": out_frac,
        "sample_odd": sample_odd,
        "encoder_hidden_states_odd": ehs[1:],
        "out_odd": out_odd,
    }


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
# Input images
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


# ---------------------------------------------------------------------------------------------------------------
# Pipeline goldens
# ---------------------------------------------------------------------------------------------------------------


def case(name, kind, sampler, steps=8, guidance=7.5, width=IMAGE_SIZE, height=IMAGE_SIZE, seeds=(42,),
         strength=None, prompt=PROMPT, negative=NEGATIVE_PROMPT):
    return {
        "name": name,
        "pipeline": kind,
        "prompt": prompt,
        "negative_prompt": negative,
        "steps": steps,
        "guidance_scale": guidance,
        "width": width,
        "height": height,
        "seeds": list(seeds),
        "sampler": sampler,
        "strength": strength,
    }


def sd1_cases():
    cases = [case(f"txt2img_{s}", "txt2img", s) for s in SAMPLERS]
    cases += [
        case("txt2img_default", "txt2img", "default"),
        case("txt2img_batch2", "txt2img", "euler_a", seeds=(7, 8)),
        case("txt2img_cfg1", "txt2img", "euler", guidance=1.0),
        case("txt2img_48x64", "txt2img", "dpmpp_2m", width=48, height=64),
        case("txt2img_1step", "txt2img", "euler", steps=1),
    ]
    for sampler in ("ddim", "euler_a", "dpmpp_2m"):
        for strength in (0.3, 0.75):
            cases.append(case(f"img2img_{sampler}_s{int(strength * 100)}", "img2img", sampler, strength=strength))
    cases.append(case("img2img_euler_s100", "img2img", "euler", strength=1.0))
    cases += inpaint_cases()
    return cases


def inpaint_cases():
    return [
        case(f"inpaint_{sampler}_s{int(strength * 100)}", "inpaint", sampler, strength=strength)
        for sampler in ("ddim", "euler_a")
        for strength in (1.0, 0.75)
    ]


def sd2_cases():
    return [case(f"txt2img_{s}", "txt2img", s) for s in ("ddim", "euler", "euler_a", "dpmpp_2m_karras", "default")]


PIPELINE_CLASSES = {
    "txt2img": StableDiffusionPipeline,
    "img2img": StableDiffusionImg2ImgPipeline,
    "inpaint": StableDiffusionInpaintPipeline,
}


def load_pipelines(model_dir, dtype):
    """One loaded set of components shared by the three pipeline classes."""
    base = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None)
    base = base.to(dtype)
    out = {}
    for kind, cls in PIPELINE_CLASSES.items():
        p = cls(**{k: getattr(base, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        p.set_progress_bar_config(disable=True)
        out[kind] = p
    return out


def run_case(pipes, c, init_image, mask_image, prompt_embeds=None):
    pipe = pipes[c["pipeline"]]
    original = pipe.scheduler
    set_sampler(pipe, c["sampler"])
    kwargs = dict(
        num_inference_steps=c["steps"],
        guidance_scale=c["guidance_scale"],
        generator=[torch.Generator("cpu").manual_seed(s) for s in c["seeds"]],
        output_type="np",
    )
    n = len(c["seeds"])
    if prompt_embeds is None:
        kwargs.update(prompt=[c["prompt"]] * n, negative_prompt=[c["negative_prompt"]] * n)
    else:
        kwargs.update(prompt_embeds=prompt_embeds[0].repeat(n, 1, 1),
                      negative_prompt_embeds=prompt_embeds[1].repeat(n, 1, 1))
    if c["pipeline"] == "txt2img":
        kwargs.update(width=c["width"], height=c["height"])
    elif c["pipeline"] == "img2img":
        kwargs.update(image=init_image, strength=c["strength"])
    else:
        kwargs.update(image=init_image, mask_image=mask_image, strength=c["strength"], width=c["width"],
                      height=c["height"])
    with torch.no_grad():
        images = pipe(**kwargs).images
    config = dict(pipe.scheduler.config)
    config["_trace"] = scheduler_trace(pipe.scheduler)
    pipe.scheduler = original
    return images, config


def scheduler_trace(scheduler):
    """The schedule the run used, for debugging a port: the full `steps` schedule (img2img/inpaint start at
    `begin_index`), `sigmas` for the sigma-based schedulers."""
    trace = {
        "timesteps": [float(t) for t in scheduler.timesteps],
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "begin_index": getattr(scheduler, "begin_index", None),
    }
    sigmas = getattr(scheduler, "sigmas", None)
    if isinstance(sigmas, torch.Tensor):
        trace["sigmas"] = [float(x) for x in sigmas]
    return trace


def effective_scheduler_config(config):
    return {k: v for k, v in sorted(config.items()) if not k.startswith("_")}


def one_token_sensitivity(pipes, c, init_image, mask_image):
    """Max |pixel change| (in 1/255) when one prompt token (position 5) is swapped for another."""
    pipe = pipes[c["pipeline"]]
    ids = pipe.tokenizer(c["prompt"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    other = ids.clone()
    other[0, 5] = (int(ids[0, 5]) + 137) % (pipe.tokenizer.vocab_size - 2)
    with torch.no_grad():
        neg = pipe.text_encoder(
            pipe.tokenizer(c["negative_prompt"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        )[0]
        a = pipe.text_encoder(ids)[0]
        b = pipe.text_encoder(other)[0]
    img_a, _ = run_case(pipes, c, init_image, mask_image, prompt_embeds=(a, neg))
    img_b, _ = run_case(pipes, c, init_image, mask_image, prompt_embeds=(b, neg))
    return max_abs(img_a, img_b) * 255


def save_image_golden(out_dir, name, images):
    save_tensors(out_dir / f"{name}.safetensors", {"images": torch.from_numpy(np.ascontiguousarray(images))})
    Image.fromarray((images[0] * 255).round().astype("uint8")).save(out_dir / f"{name}.png", optimize=False)


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
    }

    text32, text64 = text_goldens(any32), text_goldens(any64)
    save_tensors(out_dir / "text_embeds.safetensors", text32)
    doc["text"] = {
        "file": "text_embeds.safetensors",
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE_PROMPT,
        "empty_prompt": "",
        "clip_skip": {"prompt_embeds_clip_skip2": 2},
        "f64_max_abs_diff": compare_goldens(text32, text64),
    }

    unet32 = unet_goldens(any32, text32)
    unet64 = unet_goldens(any64, {k: v.to(torch.float64) for k, v in text32.items()})
    save_tensors(out_dir / "unet.safetensors", unet32)
    doc["unet"] = {
        "file": "unet.safetensors",
        "timestep": UNET_TIMESTEP,
        "timestep_frac": UNET_TIMESTEP_FRAC,
        "calls": [
            {"sample": "sample", "timestep": "timestep", "encoder_hidden_states": "encoder_hidden_states",
             "out": "out"},
            {"sample": "sample", "timestep": "timestep_frac", "encoder_hidden_states": "encoder_hidden_states",
             "out": "out_frac"},
            {"sample": "sample_odd", "timestep": "timestep", "encoder_hidden_states": "encoder_hidden_states_odd",
             "out": "out_odd"},
        ],
        "f64_max_abs_diff": {k: v for k, v in compare_goldens(unet32, unet64).items() if k.startswith("out")},
    }

    vae32, vae64 = vae_goldens(any32, init_image), vae_goldens(any64, init_image)
    save_tensors(out_dir / "vae.safetensors", vae32)
    doc["vae"] = {
        "file": "vae.safetensors",
        "scaling_factor": any32.vae.config.scaling_factor,
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
            img32, config = run_case(p32, c, init_image, mask_image)
            with RandnInF32():
                img64, _ = run_case(p64, c, init_image, mask_image)
            diff = max_abs(img32, img64) * 255
            worst = max(worst, diff)
            assert diff < 1.0, (name, c["name"], diff)
            save_image_golden(out_dir, c["name"], img32)
            entry = dict(c)
            entry.update(
                file=f"{c['name']}.safetensors",
                png=f"{c['name']}.png",
                scheduler_class=config.get("_class_name") or type(p32[c["pipeline"]].scheduler).__name__,
                scheduler_config=effective_scheduler_config(config),
                scheduler_trace=config["_trace"],
                f64_max_abs_diff_255=round(diff, 6),
                shape=list(img32.shape),
            )
            if c["sampler"] != "default":
                cls, extra = SAMPLERS[c["sampler"]]
                entry["scheduler_class"] = cls.__name__
                entry["scheduler_extra"] = extra
            else:
                entry["scheduler_class"] = type(p32[c["pipeline"]].scheduler).__name__
                entry["scheduler_extra"] = {}
            doc["cases"].append(entry)
            print(f"  {name} {c['name']}: f32 vs f64 max {diff:.4f}/255")
        print(f"  {name}: worst pipeline f32 vs f64 {worst:.4f}/255")
        doc["f64_max_abs_diff_255_worst"] = round(worst, 6)

    doc["prompt_sensitivity_255"] = {}
    for c in sensitivity_cases if with_pipelines else []:
        s = one_token_sensitivity(p32, c, init_image, mask_image)
        doc["prompt_sensitivity_255"][c["name"]] = round(s, 3)
        print(f"  {name} {c['name']}: one-token prompt change moves pixels by up to {s:.1f}/255")
        assert s >= 20.0, (name, c["name"], s)
    write_json(out_dir / "cases.json", doc)


def write_inputs():
    GOLDEN.mkdir(parents=True, exist_ok=True)
    make_init_image().save(GOLDEN / "init.png", optimize=False)
    make_mask_image().save(GOLDEN / "mask.png", optimize=False)
    return GOLDEN / "init.png", GOLDEN / "mask.png"


def write_rng_golden():
    """torch's CPU generator, for the Rust port of it: randn of several sizes (the <16 and >=16 code paths)."""
    tensors = {}
    doc = []
    for seed in (0, 42, 2**32 + 5):
        for n in (1, 7, 15, 16, 17, 100, 256):
            g = torch.Generator("cpu").manual_seed(seed)
            key = f"randn_seed{seed}_n{n}"
            tensors[key] = torch.randn(n, generator=g, dtype=torch.float32)
            doc.append({"key": key, "seed": seed, "shape": [n]})
    g = torch.Generator("cpu").manual_seed(42)
    tensors["randn_seed42_1x4x8x8_then_1x4x8x8"] = torch.cat(
        [torch.randn((1, 4, 8, 8), generator=g), torch.randn((1, 4, 8, 8), generator=g)]
    )
    doc.append({"key": "randn_seed42_1x4x8x8_then_1x4x8x8", "seed": 42, "shape": [2, 4, 8, 8],
                "note": "two successive draws of [1,4,8,8] from one generator, concatenated"})
    save_tensors(GOLDEN / "rng.safetensors", tensors)
    write_json(GOLDEN / "rng.json", doc)


def write_all_goldens(with_pipelines):
    init_png, mask_png = write_inputs()
    write_rng_golden()
    sd1 = sd1_cases()
    t2i = {c["name"]: c for c in sd1}
    write_model_goldens(
        "tiny-sd1", MODELS / "tiny-sd1", sd1, init_png, mask_png, with_pipelines,
        [t2i["txt2img_default"], t2i["txt2img_cfg1"], t2i["img2img_euler_a_s75"]],
    )
    inp = inpaint_cases()
    write_model_goldens("tiny-sd1-inpaint", MODELS / "tiny-sd1-inpaint", inp, init_png, mask_png, with_pipelines,
                        [inp[0]])
    sd2 = sd2_cases()
    write_model_goldens("tiny-sd2", MODELS / "tiny-sd2", sd2, init_png, mask_png, with_pipelines,
                        [sd2[0], case("txt2img_euler_cfg1", "txt2img", "euler", guidance=1.0)])


# ---------------------------------------------------------------------------------------------------------------
# Full-size random checkpoints (not committed)
# ---------------------------------------------------------------------------------------------------------------


def write_full_size(out_root):
    out_root = Path(out_root)
    specs = {
        "sd15": dict(unet=SD15_UNET, vae=SD15_VAE, te=SD15_TEXT_ENCODER, scheduler=SD15_SCHEDULER,
                     index=SD15_MODEL_INDEX, pad="<|endoftext|>", tok_name="openai/clip-vit-large-patch14"),
        "sd21": dict(unet=SD21_UNET, vae=SD21_VAE, te=SD21_TEXT_ENCODER, scheduler=SD21_SCHEDULER,
                     index=SD21_MODEL_INDEX, pad="!", tok_name=SD21_TOKENIZER_NAME),
    }
    for i, (name, spec) in enumerate(specs.items()):
        out = out_root / name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        torch.manual_seed(7000 + i)
        write_json(out / "model_index.json", spec["index"])
        write_json(out / "scheduler" / "scheduler_config.json", spec["scheduler"])
        write_json(out / "feature_extractor" / "preprocessor_config.json", CLIP_PREPROCESSOR)
        write_tokenizer(out / "tokenizer", None, spec["pad"], True, spec["tok_name"])

        unet = UNet2DConditionModel.from_config(spec["unet"]).to(torch.float16)
        unet.save_pretrained(str(out / "unet"), safe_serialization=True, max_shard_size="20GB")
        del unet
        write_json(out / "unet" / "config.json", spec["unet"])
        vae = AutoencoderKL.from_config(spec["vae"]).to(torch.float16)
        vae.save_pretrained(str(out / "vae"), safe_serialization=True)
        del vae
        write_json(out / "vae" / "config.json", spec["vae"])

        skip = ("_name_or_path", "architectures", "model_type", "torch_dtype", "transformers_version")
        te_config = CLIPTextConfig(**{k: v for k, v in spec["te"].items() if k not in skip})
        te = CLIPTextModel(te_config).to(torch.float16)
        te.save_pretrained(str(out / "text_encoder"), safe_serialization=True)
        del te
        write_json(out / "text_encoder" / "config.json", spec["te"])
        prefix_text_model_keys(out / "text_encoder" / "model.safetensors")

        loaded = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, feature_extractor=None,
                                                         torch_dtype=torch.float16)
        assert loaded.tokenizer.pad_token == spec["pad"] and len(loaded.tokenizer) == 49408
        assert loaded.unet.config.cross_attention_dim == spec["te"]["hidden_size"]
        with safe_open(str(out / "text_encoder" / "model.safetensors"), "pt") as f:
            stored = f.get_tensor("text_model.encoder.layers.0.self_attn.q_proj.weight")
        assert torch.equal(stored, loaded.text_encoder.encoder.layers[0].self_attn.q_proj.weight.detach())
        counts = {k: sum(p.numel() for p in getattr(loaded, k).parameters()) for k in ("text_encoder", "unet", "vae")}
        del loaded
        print(f"{name}: loads in diffusers; parameters {counts}")
        for sub in ("text_encoder", "unet", "vae", "tokenizer", "scheduler"):
            size = sum(p.stat().st_size for p in (out / sub).iterdir())
            print(f"  {name}/{sub}: {size / 2**20:.1f} MiB")


# ---------------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", metavar="OUT_DIR", help="write real-architecture random checkpoints there")
    parser.add_argument("--models-only", action="store_true", help="skip the full-pipeline goldens")
    args = parser.parse_args()

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    if args.full_size:
        write_full_size(args.full_size)
        return
    write_tiny_models()
    write_all_goldens(with_pipelines=not args.models_only)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"tests/fixtures: {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
