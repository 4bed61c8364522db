#!/usr/bin/env python3
"""Golden outputs of diffusers' schedulers for crates/sd-core/tests/schedulers.rs.

Writes tests/fixtures/schedulers/:
  index.json               every case: sampler, config name, step count, what was recorded
  inputs.safetensors       the fixed input tensors (x0, original, noise), shape [2, 4, 8, 8]
  <sampler>.safetensors    per case: timesteps, sigmas, alphas_cumprod, every step output of a full
                           denoising loop (probed: 64 of 512 values; the final output in full),
                           add_noise results and an img2img loop (probed)
  timesteps.safetensors    timesteps only, for many step counts (spacing edge cases)

Each scheduler is built the way a pipeline swaps schedulers and as the Rust side mirrors it:
    base = <config's _class_name>.from_config(raw_config)          # pipe.scheduler
    s    = <sampler's class>.from_config(base.config, **extra)
    s.set_timesteps(steps)
The loop mirrors StableDiffusionPipeline (CFG already applied, so the "model" is one deterministic function):
    x = x0 * s.init_noise_sigma
    for t in s.timesteps: x = s.step(fake_model(s.scale_model_input(x, t), t), t, x, generator=gens)
fake_model(x, t) = 0.8 * x / (1 + |x|) + 0.01 * t / 1000 uses only IEEE-exact elementwise ops, so the Rust
test computes it bit-identically. Stochastic samplers get one torch.Generator per batch item.

Run from the repository root: python3 tools/make_scheduler_goldens.py
"""

import inspect
import json
from pathlib import Path

import diffusers
import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "schedulers"

SHAPE = (2, 4, 8, 8)
SEEDS = [1234, 5678]
PROBE_STRIDE = 8

SAMPLERS = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}

# scheduler_config.json files as models ship them.
CONFIGS = {
    # runwayml/stable-diffusion-v1-5
    "sd15": {
        "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", **SD_BETAS, "set_alpha_to_one": False,
        "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False,
    },
    # stabilityai/stable-diffusion-2-1
    "sd21v": {
        "_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", **SD_BETAS, "clip_sample": False,
        "prediction_type": "v_prediction", "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "trained_betas": None,
    },
    # stabilityai/sd-turbo
    "turbo": {
        "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0", **SD_BETAS, "clip_sample": False,
        "interpolation_type": "linear", "prediction_type": "epsilon", "sample_max_value": 1.0,
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "trailing",
        "trained_betas": None, "use_karras_sigmas": False,
    },
}

MAIN_STEPS = [1, 4, 10, 25]
VARIANT_STEPS = [4, 10]


def variant(base, **changes):
    cfg = dict(CONFIGS[base])
    cfg.update(changes)
    return cfg


# Per sampler: extra (config name, raw config, step counts) beyond the three model configs.
VARIANTS = {
    "ddim": [
        ("linspace_alpha1_clip_sample", variant("sd15", _class_name="DDIMScheduler", timestep_spacing="linspace",
                                                 set_alpha_to_one=True, clip_sample=True, prediction_type="sample"),
         VARIANT_STEPS),
        ("zero_snr_v", variant("sd21v", rescale_betas_zero_snr=True, timestep_spacing="trailing"), VARIANT_STEPS),
        ("linear_defaults", {"_class_name": "DDIMScheduler"}, VARIANT_STEPS),
        ("cosine", variant("sd15", beta_schedule="squaredcos_cap_v2"), VARIANT_STEPS),
    ],
    "pndm": [
        ("prk", variant("sd15", skip_prk_steps=False), [4, 10, 25]),
        ("prk_v_linspace", variant("sd21v", skip_prk_steps=False, timestep_spacing="linspace"), [4, 10]),
        ("alpha1", variant("sd15", set_alpha_to_one=True), VARIANT_STEPS),
    ],
    "euler": [
        ("karras", variant("sd15", use_karras_sigmas=True), VARIANT_STEPS + [25]),
        ("sigma_min_linspace", variant("sd15", final_sigmas_type="sigma_min", timestep_spacing="linspace"),
         VARIANT_STEPS),
        ("continuous_v", variant("sd21v", timestep_type="continuous"), VARIANT_STEPS),
        ("log_linear", variant("sd15", interpolation_type="log_linear"), VARIANT_STEPS),
        ("zero_snr_v", variant("sd21v", rescale_betas_zero_snr=True, timestep_spacing="trailing"), VARIANT_STEPS),
        ("sample", variant("sd15", prediction_type="sample"), VARIANT_STEPS),
    ],
    "euler_a": [
        ("leading", variant("sd15", timestep_spacing="leading"), VARIANT_STEPS),
    ],
    "heun": [
        ("karras", variant("sd15", use_karras_sigmas=True), VARIANT_STEPS),
        ("sample_clip", variant("sd15", prediction_type="sample", clip_sample=True), VARIANT_STEPS),
        ("heun_defaults", {"_class_name": "HeunDiscreteScheduler"}, VARIANT_STEPS),
    ],
    "dpmpp_2m": [
        ("sigma_min_no_lower_final", variant("sd15", final_sigmas_type="sigma_min", lower_order_final=False),
         [4, 10, 25]),
        ("order3_heun_euler_final", variant("sd15", solver_order=3, solver_type="heun", euler_at_final=True),
         [4, 10, 25]),
        ("dpmsolver_sigma_min", variant("sd15", algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
         VARIANT_STEPS),
        ("lambda_clipped_sample", variant("sd15", lambda_min_clipped=-2.0, prediction_type="sample",
                                          timestep_spacing="linspace"), VARIANT_STEPS),
        ("leading_offset", variant("sd15", timestep_spacing="leading"), VARIANT_STEPS),
        ("cosine_trailing", variant("sd15", beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing"),
         VARIANT_STEPS),
    ],
    "dpmpp_2m_karras": [
        ("sigma_min", variant("sd15", final_sigmas_type="sigma_min"), [4, 10, 25]),
    ],
    "unipc": [
        ("bh1_order3", variant("sd15", solver_type="bh1", solver_order=3), [4, 10, 25]),
        ("karras_sigma_min", variant("sd15", use_karras_sigmas=True, final_sigmas_type="sigma_min"), VARIANT_STEPS),
        ("noise_pred", variant("sd21v", predict_x0=False), VARIANT_STEPS),
        ("disable_corrector_no_lower_final", variant("sd15", disable_corrector=[0, 2], lower_order_final=False),
         VARIANT_STEPS),
        ("leading_sample", variant("sd15", timestep_spacing="leading", prediction_type="sample"), VARIANT_STEPS),
    ],
    "lcm": [
        ("lcm_model", {
            "_class_name": "LCMScheduler", "_diffusers_version": "0.22.0", **SD_BETAS, "clip_sample": False,
            "clip_sample_range": 1.0, "dynamic_thresholding_ratio": 0.995, "original_inference_steps": 50,
            "prediction_type": "epsilon", "rescale_betas_zero_snr": False, "sample_max_value": 1.0,
            "set_alpha_to_one": True, "steps_offset": 1, "thresholding": False, "timestep_scaling": 10.0,
            "timestep_spacing": "leading", "trained_betas": None,
        }, [1, 2, 4, 8]),
        ("clip_sample_v", variant("sd21v", clip_sample=True, original_inference_steps=20), VARIANT_STEPS),
    ],
}


def build(sampler, raw, steps):
    class_name, extra = SAMPLERS[sampler]
    base_cls = getattr(diffusers, raw.get("_class_name", class_name))
    base = base_cls.from_config(raw)
    sched = getattr(diffusers, class_name).from_config(base.config, **extra)
    sched.set_timesteps(steps)
    return sched


def fake_model(x, t):
    return 0.8 * x / (1 + x.abs()) + 0.01 * float(t) / 1000


def generators():
    return [torch.Generator().manual_seed(s) for s in SEEDS]


def step_kwargs(sched, gens):
    return {"generator": gens} if "generator" in inspect.signature(sched.step).parameters else {}


def denoise(sched, x, timesteps, gens):
    outputs = []
    for t in timesteps:
        x_in = sched.scale_model_input(x, t)
        x = sched.step(fake_model(x_in, t), t, x, **step_kwargs(sched, gens)).prev_sample
        outputs.append(x)
    return torch.stack(outputs)


def add_noise_at(sampler, raw, steps, index, original, noise):
    sched = build(sampler, raw, steps)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(index)
    t = sched.timesteps[index:index + 1].repeat(original.shape[0])
    return sched.add_noise(original, noise, t)


def img2img_begin(sched, steps):
    """Where diffusers' img2img starts for strength 0.6: t_start * order."""
    init_timestep = min(int(steps * 0.6), steps)
    t_start = max(steps - init_timestep, 0)
    return t_start * sched.order


def probe(t):
    """Every PROBE_STRIDE-th element of each [2, 4, 8, 8] tensor (64 of 512 values, all batch items and
    channels): intermediate results are stored this way to keep the fixtures small."""
    return t.reshape(*t.shape[:-4], -1)[..., ::PROBE_STRIDE].contiguous()


def case(sampler, config_name, raw, steps, inputs, tensors, record_schedule):
    key = f"{config_name}/{steps}"
    sched = build(sampler, raw, steps)
    record = {"sampler": sampler, "config": config_name, "steps": steps, "key": key,
              "init_noise_sigma": float(sched.init_noise_sigma), "order": sched.order}
    tensors[f"{key}/timesteps"] = sched.timesteps.to(torch.float64).contiguous()
    if sampler not in ("ddim", "pndm", "lcm"):
        tensors[f"{key}/sigmas"] = torch.as_tensor(sched.sigmas, dtype=torch.float32).contiguous()
    if record_schedule:
        tensors[f"{config_name}/alphas_cumprod"] = sched.alphas_cumprod.to(torch.float32).contiguous()

    x = inputs["x0"] * sched.init_noise_sigma
    outputs = denoise(sched, x, sched.timesteps, generators())
    tensors[f"{key}/steps"] = probe(outputs)
    tensors[f"{key}/final"] = outputs[-1].contiguous()

    n = len(sched.timesteps)
    indices = sorted({0, n - 1})
    record["add_noise_indices"] = indices
    tensors[f"{key}/add_noise"] = probe(torch.stack(
        [add_noise_at(sampler, raw, steps, i, inputs["original"], inputs["noise"]) for i in indices]))

    if steps >= 4:
        sched = build(sampler, raw, steps)
        begin = img2img_begin(sched, steps)
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        t0 = sched.timesteps[begin:begin + 1].repeat(SHAPE[0])
        x = sched.add_noise(inputs["original"], inputs["noise"], t0)
        record["img2img_begin"] = begin
        tensors[f"{key}/img2img_start"] = probe(x)
        tensors[f"{key}/img2img"] = probe(denoise(sched, x, sched.timesteps[begin:], generators()))
    return record


def timestep_table(tensors, groups):
    """Timesteps only, for many step counts: one class per spacing family, plus Karras sigmas. Each group is
    the sd15 config with some keys overridden; its tensors are named `<group>/<steps>`."""
    counts = list(range(1, 31)) + [50, 61, 103]
    families = {
        "ddim": "DDIMScheduler", "pndm": "PNDMScheduler", "euler": "EulerDiscreteScheduler",
        "dpmpp_2m": "DPMSolverMultistepScheduler", "lcm": "LCMScheduler",
    }
    specs = []
    for sampler, class_name in families.items():
        for spacing in ["leading", "linspace", "trailing"]:
            overrides = {"timestep_spacing": spacing, "_class_name": class_name}
            specs.append((f"{sampler}/{spacing}", sampler, overrides))
            if sampler == "pndm":
                specs.append((f"{sampler}/{spacing}/prk", sampler, dict(overrides, skip_prk_steps=False)))
    for sampler in ["euler", "heun", "dpmpp_2m_karras", "unipc"]:
        specs.append((f"{sampler}/karras", sampler, {"use_karras_sigmas": True}))
    for name, sampler, overrides in specs:
        steps = [n for n in counts
                 if not (sampler == "lcm" and n > 50) and not (overrides.get("skip_prk_steps") is False and n < 4)]
        for n in steps:
            sched = build(sampler, variant("sd15", **overrides), n)
            tensors[f"{name}/{n}"] = sched.timesteps.to(torch.float32).contiguous()
            if "karras" in name:
                tensors[f"{name}/{n}/sigmas"] = torch.as_tensor(sched.sigmas, dtype=torch.float32).contiguous()
        groups.append({"name": name, "sampler": sampler, "sd15_overrides": overrides, "steps": steps})


def to_json_lines(index):
    """JSON with one line per config, case and timestep list, so diffs stay readable."""
    parts = []
    for key, value in index.items():
        if isinstance(value, dict):
            body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f"{json.dumps(key)}: {{\n{body}\n}}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            body = ",\n".join(f"  {json.dumps(v)}" for v in value)
            parts.append(f"{json.dumps(key)}: [\n{body}\n]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main():
    diffusers.utils.logging.set_verbosity_error()
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "x0": torch.randn(SHAPE, generator=gen),
        "original": 0.5 * torch.randn(SHAPE, generator=gen),
        "noise": torch.randn(SHAPE, generator=gen),
    }
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(OUT / "inputs.safetensors"))

    index = {"diffusers": diffusers.__version__, "torch": torch.__version__, "seeds": SEEDS,
             "configs": {}, "cases": [], "timesteps": []}
    for sampler in SAMPLERS:
        tensors = {}
        runs = [(name, CONFIGS[name], MAIN_STEPS) for name in CONFIGS] + VARIANTS.get(sampler, [])
        for config_name, raw, step_counts in runs:
            index["configs"][config_name + ("" if config_name in CONFIGS else f"@{sampler}")] = raw
            for i, steps in enumerate(step_counts):
                record = case(sampler, config_name, raw, steps, inputs, tensors, record_schedule=i == 0)
                record["config_key"] = config_name + ("" if config_name in CONFIGS else f"@{sampler}")
                index["cases"].append(record)
        save_file(tensors, str(OUT / f"{sampler}.safetensors"))

    table = {}
    timestep_table(table, index["timesteps"])
    save_file(table, str(OUT / "timesteps.safetensors"))
    (OUT / "index.json").write_text(to_json_lines(index))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(index['cases'])} cases, {len(index['timesteps'])} timestep groups, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
