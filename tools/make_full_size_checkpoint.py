#!/usr/bin/env python3
"""Writes a full-size random-weight checkpoint twice, as a single LDM-layout .safetensors file and as the
equivalent diffusers folder (the same numbers), to measure single-file loading against folder loading. Needs
only torch and safetensors (shapes come from tests/fixtures/single_file/keys-NAME.json).

  python3 tools/make_full_size_checkpoint.py sd15|sd21|sdxl OUT_DIR [--dtype f16|f32]

Writes OUT_DIR/NAME.safetensors and OUT_DIR/NAME/ (model_index.json, configs, weights; tokenizers copied from
tests/fixtures/tokenizer/clip-vit-l). Weights are small random values: images are noise; this is for load time,
memory and "every tensor consumed", not for pictures. Not a test fixture (gigabytes).
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_single_file_fixtures as m  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    name, out = sys.argv[1], sys.argv[2]
    dtype = torch.float32 if "--dtype" in sys.argv and sys.argv[sys.argv.index("--dtype") + 1] == "f32" \
        else torch.float16
    keys = json.load(open(os.path.join(ROOT, "tests/fixtures/single_file", f"keys-{name}.json")))
    unet_cfg = dict(keys["unet_config"], _class_name="UNet2DConditionModel")
    encoders = {
        "sd15": {"text_encoder": (m.CLIP_L, "clip", "cond_stage_model.transformer.")},
        "sd21": {"text_encoder": (m.CLIP_H, "open_clip", "cond_stage_model.model.")},
        "sdxl": {"text_encoder": (m.CLIP_L, "clip", "conditioner.embedders.0.transformer."),
                 "text_encoder_2": (m.CLIP_G, "open_clip", "conditioner.embedders.1.model.")},
    }[name]
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    norms = ("norm1.weight", "norm2.weight", "norm3.weight", "norm.weight", "_norm.weight", "norm_out.weight",
             "group_norm.weight")

    def randomize(shapes):
        out = {}
        for k, shape in shapes.items():
            t = torch.randn(shape, generator=gen) * 0.02
            out[k] = (t + 1.0 if k.endswith(norms) else t).to(dtype)
        return out

    def save_component(comp, sd, config, base):
        os.makedirs(os.path.join(folder, comp), exist_ok=True)
        save_file(sd, os.path.join(folder, comp, base + ".safetensors"))
        with open(os.path.join(folder, comp, "config.json"), "w") as f:
            json.dump(config, f)

    ldm = {}
    sd = randomize(keys["diffusers"]["unet"])
    save_component("unet", sd, unet_cfg, "diffusion_pytorch_model")
    for k, v in sd.items():
        ldm["model.diffusion_model." + m.unet_to_ldm(k, unet_cfg)] = v
    vae_cfg = dict(m.VAE, _class_name="AutoencoderKL", scaling_factor=0.13025 if name == "sdxl" else 0.18215)
    sd = randomize(keys["diffusers"]["vae"])
    save_component("vae", sd, vae_cfg, "diffusion_pytorch_model")
    for k, v in sd.items():
        n, t = m.vae_to_ldm(k, v, 4)
        ldm["first_stage_model." + n] = t.contiguous()
    for comp, (cfg, kind, prefix) in encoders.items():
        sd = randomize(keys["diffusers"][comp])
        arch = "CLIPTextModelWithProjection" if comp == "text_encoder_2" else "CLIPTextModel"
        save_component(comp, sd, dict(cfg, architectures=[arch], eos_token_id=2), "model")
        tok = "tokenizer_2" if comp == "text_encoder_2" else "tokenizer"
        shutil.copytree(os.path.join(ROOT, "tests/fixtures/tokenizer/clip-vit-l"), os.path.join(folder, tok),
                        dirs_exist_ok=True)
        if kind == "open_clip":
            with open(os.path.join(folder, tok, "special_tokens_map.json"), "w") as f:
                json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                           "unk_token": "<|endoftext|>", "pad_token": "!"}, f)
            with open(os.path.join(folder, tok, "tokenizer_config.json"), "w") as f:
                json.dump({"model_max_length": 77, "pad_token": "!"}, f)
            ldm.update(m.open_clip_to_ldm(sd, prefix, extra_layer=name == "sd21"))
        else:
            ldm.update(m.clip_to_ldm(sd, prefix))
    scheduler = {"sd15": {"_class_name": "PNDMScheduler", "skip_prk_steps": True},
                 "sd21": {"_class_name": "DDIMScheduler", "clip_sample": False, "prediction_type": "v_prediction"},
                 "sdxl": {"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading"}}[name]
    scheduler.update(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                     set_alpha_to_one=False, steps_offset=1)
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler, f)
    pipeline = "StableDiffusionXLPipeline" if name == "sdxl" else "StableDiffusionPipeline"
    index = {"_class_name": pipeline, "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", scheduler["_class_name"]],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    if name == "sdxl":
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f)
    path = os.path.join(out, name + ".safetensors")
    save_file({k: v.contiguous() for k, v in ldm.items()}, path)
    print(f"{path}: {len(ldm)} tensors, {os.path.getsize(path) / 2**30:.2f} GiB; folder {folder}")


if __name__ == "__main__":
    main()
