#!/usr/bin/env python3
"""Writes a kohya SDXL LoRA in the naming real SDXL LoRAs use (the original LDM/SGM block names,
`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`) for the tiny SDXL model, and the image diffusers makes with it (load_lora_weights maps the SGM names itself, then
fuse_lora(lora_scale=0.8)): the Rust test applies the same file through `<lora:...>` and compares.

    python3 tools/make_sdxl_lora_fixture.py

The LDM names are written from the diffusers module names with the block arithmetic of a UNet with
layers_per_block = 2 (every SD 1.x/2.x/SDXL UNet): input_blocks[1 + 3i + j] = down_blocks[i] resnet/attention j,
output_blocks[3i + j] = up_blocks[i] resnet/attention j, middle_block[0, 1, 2] = resnet, attention, resnet.
Text-encoder modules (`lora_te1_*`/`lora_te2_*`) go in a second file, te_kohya.safetensors: with transformers 5
diffusers' load_lora_weights leaves them unapplied (it reports their keys as unexpected), so its reference merges
W += 0.8 * alpha/rank * up @ down into both encoders' weights directly.
"""

import copy
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from diffusers import StableDiffusionXLPipeline

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "models" / "tiny-sdxl"
OUT = ROOT / "tests" / "fixtures" / "loras" / "tiny-sdxl"
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "tiny-sdxl"
PROMPT = "a photo of an astronaut riding a horse"
STEPS, SEED, SIZE, SCALE = 4, 42, 64, 0.8
torch.manual_seed(0)
torch.set_num_threads(2)


def ldm_name(diffusers_name):
    """down_blocks.1.attentions.0.x -> input_blocks_4_1_x (underscored, as kohya writes it)."""
    m = re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", diffusers_name)
    if m:
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks_{1 + 3 * i + j}_1_{rest}"
    m = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", diffusers_name)
    if m:
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks_{3 * i + j}_1_{rest}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", diffusers_name)
    if m:
        return f"middle_block_1_{m[1]}"
    m = re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.time_emb_proj", diffusers_name)
    if m:
        i, j = int(m[2]), int(m[3])
        block = f"input_blocks_{1 + 3 * i + j}" if m[1] == "down" else f"output_blocks_{3 * i + j}"
        return f"{block}_0_emb_layers_1"
    return None


def kohya_sgm(pipe, rank=4, alpha=2.0):
    sd = {}
    for n, m in pipe.unet.named_modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        leaf = n.split(".")[-1]
        if not (("attn" in n and leaf in {"to_q", "to_k", "to_v", "0"}) or leaf == "time_emb_proj"):
            continue
        name = ldm_name(n)
        if name is None:
            continue
        key = "lora_unet_" + name.replace(".", "_")
        sd[key + ".lora_down.weight"] = torch.randn(rank, m.in_features) * 0.3
        sd[key + ".lora_up.weight"] = torch.randn(m.out_features, rank) * 0.3
        sd[key + ".alpha"] = torch.tensor(alpha)
    return sd


def kohya_te(pipe, rank=4, alpha=2.0):
    sd = {}
    for prefix, model in (("lora_te1_", pipe.text_encoder), ("lora_te2_", pipe.text_encoder_2)):
        for n, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in {"q_proj", "v_proj", "out_proj", "fc1"}:
                key = prefix + n.replace(".", "_")
                sd[key + ".lora_down.weight"] = torch.randn(rank, m.in_features) * 0.3
                sd[key + ".lora_up.weight"] = torch.randn(m.out_features, rank) * 0.3
                sd[key + ".alpha"] = torch.tensor(alpha)
    return sd


def merge_te(pipe, sd, scale):
    with torch.no_grad():
        for prefix, model in (("lora_te1_", pipe.text_encoder), ("lora_te2_", pipe.text_encoder_2)):
            for n, m in model.named_modules():
                key = prefix + n.replace(".", "_")
                if key + ".lora_down.weight" not in sd:
                    continue
                down, up = sd[key + ".lora_down.weight"], sd[key + ".lora_up.weight"]
                alpha = float(sd[key + ".alpha"])
                m.weight += scale * alpha / down.shape[0] * (up @ down)


def run(pipe):
    with torch.no_grad():
        img = pipe(PROMPT, num_inference_steps=STEPS, width=SIZE, height=SIZE,
                   generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images
    return torch.from_numpy(img).float().contiguous()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    base = StableDiffusionXLPipeline.from_pretrained(str(MODEL))
    base.set_progress_bar_config(disable=True)
    sd = kohya_sgm(base)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(OUT / "sgm_kohya.safetensors"))
    refs = {"base": run(base)}
    pipe = copy.deepcopy(base)
    pipe.load_lora_weights(str(OUT), weight_name="sgm_kohya.safetensors", adapter_name="sgm")
    pipe.fuse_lora(lora_scale=SCALE)
    refs["sgm_kohya"] = run(pipe)
    te = kohya_te(base)
    save_file({k: v.contiguous() for k, v in te.items()}, str(OUT / "te_kohya.safetensors"))
    pipe = copy.deepcopy(base)
    merge_te(pipe, te, SCALE)
    refs["te_kohya"] = run(pipe)
    for name, img in refs.items():
        save_file({"images": img}, str(GOLDEN / f"lora_{name}.safetensors"))
        print(name, "max |ref - base|", float((img - refs["base"]).abs().max()))
    print(len(sd) // 3, "modules")


if __name__ == "__main__":
    main()
