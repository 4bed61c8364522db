#!/usr/bin/env python3
"""Writes LoRA fixtures for the tiny SD1 model and the reference images the Rust LoRA tests compare against.

    python3 tools/make_lora_fixtures.py

tests/fixtures/loras/tiny-sd1/: kohya_attn.safetensors (kohya/A1111 keys: lora_unet_* attention + lora_te_*
q/k/v/out/fc, with alpha), peft_attn.safetensors (diffusers/PEFT keys unet.* lora_A/lora_B), locon_conv.safetensors
(LyCORIS: 3x3 resnet convs with lora_mid, 1x1 conv shortcuts). References (tests/fixtures/golden/tiny-sd1/lora_*.safetensors,
the pipeline's float images): kohya and PEFT through diffusers' load_lora_weights + fuse_lora(lora_scale), LoCon by
merging W += scale * alpha/rank * delta directly (diffusers does not read LyCORIS CP files).
"""

import copy
from pathlib import Path

import torch
from safetensors.torch import save_file
from diffusers import StableDiffusionPipeline

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "tiny-sd1"
OUT = ROOT / "tests" / "fixtures" / "loras" / "tiny-sd1"
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "tiny-sd1"
PROMPT = "a photo of an astronaut riding a horse"
STEPS, SEED, SIZE, SCALE = 4, 42, 32, 0.8
torch.manual_seed(0)
torch.set_num_threads(2)


def rand(*shape, std=0.3):
    return torch.randn(*shape) * std


def linear_layers(model, names):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in names]


def kohya(pipe, rank=4, alpha=2.0):
    sd = {}
    for prefix, model, names in (("lora_unet_", pipe.unet, {"to_q", "to_k", "to_v", "0"}),
                                 ("lora_te_", pipe.text_encoder, {"q_proj", "k_proj", "v_proj", "out_proj", "fc1"})):
        for n, m in linear_layers(model, names):
            if prefix == "lora_unet_" and "attn" not in n:
                continue
            key = prefix + n.replace(".", "_")
            sd[key + ".lora_down.weight"] = rand(rank, m.in_features)
            sd[key + ".lora_up.weight"] = rand(m.out_features, rank)
            sd[key + ".alpha"] = torch.tensor(alpha)
    return sd


def peft(pipe, rank=2):
    sd = {}
    for n, m in linear_layers(pipe.unet, {"to_q", "to_k", "to_v", "0"}):
        if "attn" not in n:
            continue
        sd[f"unet.{n}.lora_A.weight"] = rand(rank, m.in_features)
        sd[f"unet.{n}.lora_B.weight"] = rand(m.out_features, rank)
    return sd


def locon(pipe, rank=2, alpha=1.0):
    sd = {}
    for n, m in pipe.unet.named_modules():
        if not isinstance(m, torch.nn.Conv2d) or "resnets" not in n:
            continue
        key = "lora_unet_" + n.replace(".", "_")
        kh, kw = m.kernel_size
        if (kh, kw) == (3, 3):
            sd[key + ".lora_down.weight"] = rand(rank, m.in_channels, 1, 1)
            sd[key + ".lora_mid.weight"] = rand(rank, rank, kh, kw)
        else:
            sd[key + ".lora_down.weight"] = rand(rank, m.in_channels, 1, 1)
        sd[key + ".lora_up.weight"] = rand(m.out_channels, rank, 1, 1)
        sd[key + ".alpha"] = torch.tensor(alpha)
    return sd


def merge(pipe, sd, scale):
    """The direct weight-merge reference (A1111's rebuild_conventional / rebuild_cp_decomposition)."""
    modules = {"lora_unet_" + n.replace(".", "_"): m for n, m in pipe.unet.named_modules()}
    bases = {k.rsplit(".", 2)[0] for k in sd if k.endswith("lora_down.weight")}
    for base in bases:
        down, up = sd[base + ".lora_down.weight"], sd[base + ".lora_up.weight"]
        rank = down.shape[0]
        s = scale * float(sd[base + ".alpha"]) / rank
        w = modules[base].weight
        u, d = up.reshape(up.shape[0], -1), down.reshape(rank, -1)
        mid = sd.get(base + ".lora_mid.weight")
        delta = torch.einsum("n m k l, i n, m j -> i j k l", mid, u, d) if mid is not None else (u @ d).reshape(w.shape)
        with torch.no_grad():
            w += s * delta


def run(pipe):
    with torch.no_grad():
        img = pipe(PROMPT, num_inference_steps=STEPS, width=SIZE, height=SIZE,
                   generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images
    return torch.from_numpy(img).float().contiguous()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base = StableDiffusionPipeline.from_pretrained(str(MODEL), safety_checker=None)
    base.set_progress_bar_config(disable=True)
    files = {"kohya_attn": kohya(base), "peft_attn": peft(base), "locon_conv": locon(base)}
    for name, sd in files.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, str(OUT / f"{name}.safetensors"))
    refs = {"base": run(base)}
    for name in ("kohya_attn", "peft_attn"):
        pipe = copy.deepcopy(base)
        pipe.load_lora_weights(str(OUT), weight_name=f"{name}.safetensors", adapter_name=name)
        pipe.fuse_lora(lora_scale=SCALE)
        refs[name] = run(pipe)
    pipe = copy.deepcopy(base)
    merge(pipe, files["locon_conv"], SCALE)
    refs["locon_conv"] = run(pipe)
    for name, img in refs.items():
        save_file({"images": img}, str(GOLDEN / f"lora_{name}.safetensors"))
        print(name, "max |ref - base|", float((img - refs["base"]).abs().max()))


if __name__ == "__main__":
    main()
