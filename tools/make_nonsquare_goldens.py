#!/usr/bin/env python3
"""Goldens for non-square sizes: diffusers' images at 96x64, 64x96 and 128x64 on the tiny SD 1.x, SD 2.x and
SDXL fixtures, for text-to-image (several samplers), img2img and inpainting.

    python3 tools/make_nonsquare_goldens.py   # -> tests/fixtures/golden/nonsquare/{cases.json,*.png}

diffusers decodes whole unless `enable_vae_tiling()` is called, so these are whole decodes. The Rust test
(crates/sd-core/tests/nonsquare.rs) runs them on copies of the fixtures whose VAE config says `sample_size: 32`
(4-latent tiles), where the old `--vae-tiling auto` rule (tile above 4x the training area) tiled every one of
these sizes. The init image and mask are resized here to each case's size and saved, so both sides start from
the same pixels.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as sd  # noqa: E402
import make_sdxl_fixtures as sdxl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OUT = FIXTURES / "golden" / "nonsquare"
PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE = "blurry, low quality"

# (model, pipeline, sampler, width, height, strength)
CASES = [
    ("tiny-sd1", "txt2img", "euler", 96, 64, None),
    ("tiny-sd1", "txt2img", "dpmpp_2m_karras", 64, 96, None),
    ("tiny-sd1", "txt2img", "euler_a", 128, 64, None),
    ("tiny-sd1", "img2img", "ddim", 96, 64, 0.6),
    ("tiny-sd1", "inpaint", "ddim", 64, 96, 1.0),
    ("tiny-sd2", "txt2img", "ddim", 96, 64, None),
    ("tiny-sd2", "txt2img", "euler", 64, 96, None),
    ("tiny-sdxl", "txt2img", "euler", 96, 64, None),
    ("tiny-sdxl", "txt2img", "dpmpp_2m", 64, 96, None),
    ("tiny-sdxl", "img2img", "euler_a", 128, 64, 0.6),
    ("tiny-sdxl", "inpaint", "ddim", 96, 64, 1.0),
]
STEPS = 4
GUIDANCE = 7.5
SEED = 7


def main():
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    init = Image.open(FIXTURES / "golden" / "init.png").convert("RGB")
    mask = Image.open(FIXTURES / "golden" / "mask.png").convert("L")
    pipes = {}
    cases = []
    for model, kind, sampler, width, height, strength in CASES:
        if model not in pipes:
            loader = sdxl.load_pipelines if "sdxl" in model else sd.load_pipelines
            pipes[model] = loader(FIXTURES / "models" / model, torch.float32)
        pipe = pipes[model][kind]
        original = pipe.scheduler
        sd.set_sampler(pipe, sampler)
        name = f"{model}_{kind}_{sampler}_{width}x{height}"
        kwargs = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                      generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
        case = dict(name=name, model=model, pipeline=kind, sampler=sampler, width=width, height=height,
                    steps=STEPS, guidance_scale=GUIDANCE, seed=SEED, strength=strength, prompt=PROMPT,
                    negative_prompt=NEGATIVE, png=f"{name}.png")
        if kind == "txt2img":
            kwargs.update(width=width, height=height)
        else:
            sized = init.resize((width, height), Image.BICUBIC)
            sized.save(OUT / f"init_{width}x{height}.png")
            kwargs.update(image=sized, strength=strength)
            case["init_image"] = f"init_{width}x{height}.png"
            if kind == "inpaint":
                sized_mask = mask.resize((width, height), Image.NEAREST)
                sized_mask.save(OUT / f"mask_{width}x{height}.png")
                kwargs.update(mask_image=sized_mask, width=width, height=height)
                case["mask_image"] = f"mask_{width}x{height}.png"
        with torch.no_grad():
            images = pipe(**kwargs).images
        pipe.scheduler = original
        pixels = (np.asarray(images[0]) * 255).round().clip(0, 255).astype(np.uint8)
        assert pixels.shape == (height, width, 3), pixels.shape
        Image.fromarray(pixels).save(OUT / case["png"])
        cases.append(case)
        print("wrote", case["png"])
    (OUT / "cases.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
