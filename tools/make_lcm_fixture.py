#!/usr/bin/env python3
"""A tiny guidance-distilled (LCM) pipeline and diffusers' LatentConsistencyModelPipeline goldens for it.

    python3 tools/make_lcm_fixture.py   # -> tests/fixtures/models/tiny-lcm, tests/fixtures/golden/tiny-lcm

tiny-lcm is tiny-sd1 (text encoder, tokenizer and VAE are links to its folders) with a UNet that has
`time_cond_proj_dim`: tiny-sd1's UNet weights plus a seeded `time_embedding.cond_proj`, and an LCMScheduler.
The pipeline feeds the guidance-scale embedding of `guidance_scale - 1` through `timestep_cond` and runs without
classifier-free guidance; the goldens are its images at two guidance scales (which must differ).
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"
SRC = MODELS / "tiny-sd1"
DST = MODELS / "tiny-lcm"
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "tiny-lcm"
PROMPT = "a photo of an astronaut riding a horse on mars"
COND_DIM = 16
CASES = [  # (name, steps, guidance_scale, seed)
    ("lcm_g8_s4", 4, 8.0, 3),
    ("lcm_g2_s4", 4, 2.0, 3),
]


def write_model():
    if DST.exists():
        shutil.rmtree(DST)
    DST.mkdir(parents=True)
    for part in ("text_encoder", "tokenizer", "vae"):
        os.symlink(f"../tiny-sd1/{part}", DST / part)
    index = json.loads((SRC / "model_index.json").read_text())
    index["_class_name"] = "LatentConsistencyModelPipeline"
    index["scheduler"] = ["diffusers", "LCMScheduler"]
    (DST / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    scheduler = LCMScheduler.from_config(json.loads((SRC / "scheduler/scheduler_config.json").read_text()))
    scheduler.save_pretrained(DST / "scheduler")
    base = UNet2DConditionModel.from_pretrained(SRC / "unet")
    config = dict(base.config)
    config["time_cond_proj_dim"] = COND_DIM
    torch.manual_seed(2024)
    unet = UNet2DConditionModel.from_config(config)
    missing, unexpected = unet.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["time_embedding.cond_proj.weight"] and not unexpected, (missing, unexpected)
    unet.save_pretrained(DST / "unet")


def main():
    torch.set_num_threads(2)
    write_model()
    pipe = LatentConsistencyModelPipeline.from_pretrained(str(DST), safety_checker=None, feature_extractor=None,
                                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    cases, images = [], []
    for name, steps, guidance, seed in CASES:
        with torch.no_grad():
            out = pipe(prompt=PROMPT, num_inference_steps=steps, guidance_scale=guidance, width=64, height=64,
                       generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images[0]
        pixels = (np.asarray(out) * 255).round().clip(0, 255).astype(np.uint8)
        images.append(pixels)
        Image.fromarray(pixels).save(GOLDEN / f"{name}.png")
        cases.append(dict(name=name, prompt=PROMPT, steps=steps, guidance_scale=guidance, seed=seed, width=64,
                          height=64, png=f"{name}.png"))
    diff = np.abs(images[0].astype(int) - images[1].astype(int)).max()
    print("guidance 8 vs 2 max diff", diff)
    assert diff > 8, "the guidance embedding must change the image"
    (GOLDEN / "cases.json").write_text(json.dumps({"model": "tiny-lcm", "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
