"""sd-worker (CUDA build) against diffusers on the same GPU, the same folders and the same seed.

    python3 tools/bench_cuda.py --worker target/cuda/release/sd-worker --out OUT_DIR [--models sd15,sdxl]

For each model it (1) writes a full-size pipeline with random weights from the published config.json files
(SD 1.5: runwayml/stable-diffusion-v1-5, SDXL: stable-diffusion-xl-base-1.0; f16 safetensors under the published
key names, real CLIP vocabulary from tests/fixtures/tokenizer/clip-vit-l), (2) runs `sd-worker bench` on it,
(3) runs diffusers (SDPA attention, f16, eager) on it in a child process with the same measurements, then
diffusers once more in f32 (no TF32) as the yardstick for both half-precision runs' component outputs, and (4)
prints a table with the ratio ours/diffusers: text encoding, one CFG UNet step, VAE decode (median of repeats,
synchronised, after warm-up), end-to-end seconds per image (steps, CFG 7, the model's default scheduler, median
of runs after a warm-up run), and the peak GPU memory of each process (nvidia-smi, sampled every 10 ms), plus
how far the two images are apart. Needs torch, transformers and diffusers (carry the wheel to the device).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
VOCAB = ROOT / "tests" / "fixtures" / "tokenizer" / "clip-vit-l"
PROMPT = "a photograph of an astronaut riding a horse"
SIZES = {"sd15": 512, "sdxl": 1024}


# --------------------------------------------------------------------------------------------------------------
# Full-size random pipelines
# --------------------------------------------------------------------------------------------------------------


def write_tokenizer(dst, pad_token):
    shutil.copytree(VOCAB, dst)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = dst / name
        config = json.loads(path.read_text())
        config["pad_token"] = pad_token
        path.write_text(json.dumps(config, indent=2))


def write_model(name, out):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    sys.path.insert(0, str(TOOLS))
    import make_fixtures as sd
    import make_sdxl_fixtures as xl

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(1234)
    skip = ("_name_or_path", "architectures", "model_type", "torch_dtype", "transformers_version")
    text_config = lambda spec: CLIPTextConfig(**{k: v for k, v in spec.items() if k not in skip})  # noqa: E731
    if name == "sd15":
        index, scheduler, unet_cfg, vae_cfg = sd.SD15_MODEL_INDEX, sd.SD15_SCHEDULER, sd.SD15_UNET, sd.SD15_VAE
        encoders = [("text_encoder", "tokenizer", sd.SD15_TEXT_ENCODER, CLIPTextModel, "<|endoftext|>")]
    else:
        index, scheduler, unet_cfg, vae_cfg = xl.SDXL_MODEL_INDEX, xl.SDXL_SCHEDULER, xl.SDXL_UNET, xl.SDXL_VAE
        encoders = [("text_encoder", "tokenizer", xl.SDXL_TEXT_ENCODER, CLIPTextModel, "<|endoftext|>"),
                    ("text_encoder_2", "tokenizer_2", xl.SDXL_TEXT_ENCODER_2, CLIPTextModelWithProjection, "!")]
    index = {k: v for k, v in index.items() if k not in ("safety_checker", "feature_extractor", "image_encoder")}
    if name == "sd15":
        index["requires_safety_checker"] = False
    sd.write_json(out / "model_index.json", index)
    sd.write_json(out / "scheduler" / "scheduler_config.json", scheduler)
    # Random init on the GPU (seconds instead of minutes on the CPU), stored as f16 like the published fp16 files.
    with torch.device("cuda"):
        unet = UNet2DConditionModel.from_config(unet_cfg).to(torch.float16)
        unet.save_pretrained(str(out / "unet"), safe_serialization=True, max_shard_size="20GB")
        del unet
        vae = AutoencoderKL.from_config(vae_cfg).to(torch.float16)
        vae.save_pretrained(str(out / "vae"), safe_serialization=True)
        del vae
        for sub, tok, spec, cls, pad in encoders:
            te = cls(text_config(spec)).to(torch.float16)
            te.save_pretrained(str(out / sub), safe_serialization=True)
            del te
            sd.write_json(out / sub / "config.json", spec)
            sd.prefix_text_model_keys(out / sub / "model.safetensors")
            write_tokenizer(out / tok, pad)
    sd.write_json(out / "unet" / "config.json", unet_cfg)
    sd.write_json(out / "vae" / "config.json", vae_cfg)
    torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------------------
# Peak GPU memory of a child process
# --------------------------------------------------------------------------------------------------------------


class PeakMemory:
    """Samples nvidia-smi's per-process used memory of `pid` every 10 ms; `peak_mib` after `stop()`."""

    def __init__(self, pid):
        self.pid, self.peak_mib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                rows = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                       "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                      timeout=5).stdout
                for row in rows.strip().splitlines():
                    pid, used = (int(x.strip()) for x in row.split(","))
                    if pid == self.pid:
                        self.peak_mib = max(self.peak_mib, used)
            except (ValueError, subprocess.SubprocessError):
                pass
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak_mib


def run_measured(cmd, log_path, env=None):
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        peak = PeakMemory(proc.pid)
        stdout, _ = proc.communicate()
        peak_mib = peak.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}); see {log_path}:\n" + Path(log_path).read_text()[-3000:])
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_process_mib"] = peak_mib
    return result


# --------------------------------------------------------------------------------------------------------------
# diffusers side (child process)
# --------------------------------------------------------------------------------------------------------------


def diffusers_child(args):
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    def timed(fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times), times

    model = Path(args.diffusers_child)
    xl = (model / "text_encoder_2").exists()
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    extra = {} if xl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    dtype = torch.float32 if args.f32_reference else torch.float16
    if args.f32_reference:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    pipe = cls.from_pretrained(str(model), torch_dtype=dtype, **extra).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    size, device = args.size, torch.device("cuda")

    if xl:
        encode = lambda: pipe.encode_prompt(PROMPT, device=device, num_images_per_prompt=1,  # noqa: E731
                                            do_classifier_free_guidance=True, negative_prompt=None)
        emb, neg, pooled, neg_pooled = encode()
        context = torch.cat([neg, emb])
        time_ids = torch.tensor([[size, size, 0, 0, size, size]] * 2, device=device, dtype=dtype)
        added = {"text_embeds": torch.cat([neg_pooled, pooled]), "time_ids": time_ids}
    else:
        encode = lambda: pipe.encode_prompt(PROMPT, device, 1, True, negative_prompt="")  # noqa: E731
        emb, neg = encode()
        context, added = torch.cat([neg, emb]), None
    text_s, _ = timed(encode, 2, args.repeats)

    pipe.scheduler.set_timesteps(args.steps, device=device)
    t = pipe.scheduler.timesteps[0]
    generator = torch.Generator("cpu").manual_seed(args.seed)
    latents = torch.randn((1, 4, size // 8, size // 8), generator=generator).to(device, dtype)

    def unet_step():
        x = pipe.scheduler.scale_model_input(torch.cat([latents] * 2), t)
        out = pipe.unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
        uncond, text = out.chunk(2)
        return uncond + args.guidance * (text - uncond)

    if args.f32_reference:  # component outputs only, in f32 without TF32: the yardstick for both f16 runs
        with torch.no_grad():
            from safetensors.torch import save_file
            pixels = (pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
            save_file({"context": context.contiguous(), "noise_pred": unet_step().contiguous(),
                       "pixels": pixels.contiguous()}, args.dump)
        if args.image_out:
            g = torch.Generator("cpu").manual_seed(args.seed)
            kwargs = {} if xl else {"negative_prompt": ""}
            pipe(PROMPT, height=size, width=size, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 generator=g, **kwargs).images[0].save(args.image_out)
        print(json.dumps({"reference": "f32"}))
        return

    with torch.no_grad():
        unet_s, _ = timed(unet_step, 3, args.repeats)
        if args.profile_out:
            write_torch_profile(unet_step, args.profile_out)

        # As the pipelines decode: SDXL's VAE (force_upcast) in f32, SD 1.5's in f16.
        upcast = xl and pipe.vae.config.force_upcast

        def decode():
            if upcast:
                pipe.vae.to(torch.float32)
            z = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
            image = pipe.vae.decode(z).sample
            if upcast:
                pipe.vae.to(torch.float16)
            return image

        vae_s, _ = timed(decode, 1, args.repeats)
        if args.dump:
            from safetensors.torch import save_file
            save_file({"context": context.float().contiguous(), "noise_pred": unet_step().float().contiguous(),
                       "pixels": (decode().float() / 2 + 0.5).clamp(0, 1).contiguous()}, args.dump)

    images = []

    def generate():
        g = torch.Generator("cpu").manual_seed(args.seed)
        kwargs = {} if xl else {"negative_prompt": ""}
        images.append(pipe(PROMPT, height=size, width=size, num_inference_steps=args.steps,
                           guidance_scale=args.guidance, generator=g, **kwargs).images[0])

    torch.cuda.reset_peak_memory_stats()
    e2e_s, runs = timed(generate, 1, args.runs)
    images[1].save(args.image_out)
    print(json.dumps({
        "text_encode_ms": text_s * 1000, "unet_step_ms": unet_s * 1000, "vae_decode_ms": vae_s * 1000,
        "end_to_end_s": e2e_s, "end_to_end_runs_s": runs,
        "torch_max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
        "torch_max_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
        "diffusers": __import__("diffusers").__version__, "torch": torch.__version__,
    }))


def write_torch_profile(fn, path):
    """Per-kernel GPU time of one call of `fn`, as torch.profiler sees it, for comparing with ncu's view of ours."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        gpu_us = getattr(event, "self_device_time_total", None)
        if gpu_us is None:
            gpu_us = event.self_cuda_time_total
        if gpu_us > 0:
            rows.append((gpu_us, event.count, event.key))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    lines = [f"total GPU time {total / 1000:.2f} ms over {sum(r[1] for r in rows)} kernel launches"]
    lines += [f"{us / 1000:9.3f} ms {count:6d}x  {key[:150]}" for us, count, key in rows]
    Path(path).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------------


def match_images(args, name, model, size, out):
    """Whole images of ours (f16), diffusers (f16) and diffusers in f32 without TF32, same seed, at
    `--match-guidance`: with CFG 7 the 20 steps of a random-weight model amplify half-precision rounding until
    no two runs agree, so the end-to-end check uses a guidance that does not."""
    g = str(args.match_guidance)
    common = ["--steps", str(args.steps), "--guidance", g, "--seed", str(args.seed), "--repeats", "1", "--runs", "1"]
    paths = {side: out / f"{name}-{side}-g{g}.png" for side in ("ours", "diffusers", "f32")}
    run_measured([args.worker, "bench", "--model", str(model), "--device", "cuda", "--dtype", "f16", "--width",
                  str(size), "--height", str(size), "--out", str(paths["ours"]), *common,
                  *args.worker_args.split()], out / f"{name}-ours-match.log")
    run_measured([sys.executable, __file__, "--diffusers-child", str(model), "--size", str(size),
                  "--image-out", str(paths["diffusers"]), *common], out / f"{name}-diffusers-match.log")
    run_measured([sys.executable, __file__, "--diffusers-child", str(model), "--size", str(size), "--f32-reference",
                  "--dump", str(out / f"{name}-f32-match.safetensors"), "--image-out", str(paths["f32"]), *common],
                 out / f"{name}-f32-match.log")
    return {"guidance": args.match_guidance,
            "ours_vs_diffusers": image_distance(paths["ours"], paths["diffusers"]),
            "ours_vs_f32": image_distance(paths["ours"], paths["f32"]),
            "diffusers_vs_f32": image_distance(paths["diffusers"], paths["f32"])}


def image_distance(a_path, b_path):
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(a_path).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(b_path).convert("RGB"), dtype=np.float64)
    diff = np.abs(a - b)
    mse = float((diff ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "psnr_db": psnr,
            "pixels_over_8": float((diff.max(axis=2) > 8).mean())}


def component_errors(ours_path, ref_path):
    """Each component output's largest and mean difference relative to the reference's largest magnitude."""
    from safetensors.torch import load_file

    ours, ref = load_file(str(ours_path)), load_file(str(ref_path))
    errors = {}
    for key, expected in ref.items():
        actual = ours[key].reshape(expected.shape)
        scale = expected.abs().max().item() or 1.0
        diff = (actual - expected).abs()
        errors[key] = {"max_rel": diff.max().item() / scale, "mean_rel": diff.mean().item() / scale}
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help="the CUDA sd-worker binary")
    parser.add_argument("--out", default="bench-out", help="results, logs and images go here")
    parser.add_argument("--models", default="sd15,sdxl")
    parser.add_argument("--model-dir", default="/tmp/sd-bench-models", help="where the random pipelines are written")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats of each component")
    parser.add_argument("--runs", type=int, default=3, help="timed end-to-end runs")
    parser.add_argument("--only", choices=["ours", "diffusers"], help="run one side only")
    parser.add_argument("--no-reference", action="store_true", help="skip the f32 reference run")
    parser.add_argument("--match-guidance", type=float, default=1.0,
                        help="guidance of the whole-image comparison (ours, diffusers, diffusers f32)")
    parser.add_argument("--no-match", dest="match_guidance", action="store_const", const=None,
                        help="skip the whole-image comparison")
    parser.add_argument("--profile", action="store_true",
                        help="also write diffusers' per-kernel GPU times of one UNet step (torch.profiler)")
    parser.add_argument("--worker-args", default="", help="extra sd-worker bench arguments, space-separated")
    parser.add_argument("--diffusers-child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--image-out", help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--f32-reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.diffusers_child:
        return diffusers_child(args)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.models.split(","):
        model = Path(args.model_dir) / name
        if not (model / "unet" / "config.json").exists():
            started = time.time()
            write_model(name, model)
            print(f"{name}: wrote random full-size pipeline in {time.time() - started:.0f} s", flush=True)
        size = SIZES[name]
        common = ["--steps", str(args.steps), "--guidance", str(args.guidance), "--seed", str(args.seed),
                  "--repeats", str(args.repeats), "--runs", str(args.runs)]
        row = {}
        if args.only != "diffusers":
            row["ours"] = run_measured(
                [args.worker, "bench", "--model", str(model), "--device", "cuda", "--dtype", "f16",
                 "--width", str(size), "--height", str(size), "--out", str(out / f"{name}-ours.png"),
                 "--dump", str(out / f"{name}-ours.safetensors"), *common, *args.worker_args.split()],
                out / f"{name}-ours.log")
            print(f"{name} ours: {json.dumps(row['ours'])}", flush=True)
        if args.only != "ours":
            row["diffusers"] = run_measured(
                [sys.executable, __file__, "--diffusers-child", str(model), "--size", str(size),
                 "--image-out", str(out / f"{name}-diffusers.png"),
                 "--dump", str(out / f"{name}-diffusers.safetensors"), *common,
                 *(["--profile-out", str(out / f"{name}-diffusers-profile.txt")] if args.profile else [])],
                out / f"{name}-diffusers.log")
            print(f"{name} diffusers: {json.dumps(row['diffusers'])}", flush=True)
        if not args.only:
            row["image"] = image_distance(out / f"{name}-ours.png", out / f"{name}-diffusers.png")
        if not args.only and not args.no_reference:
            run_measured([sys.executable, __file__, "--diffusers-child", str(model), "--size", str(size),
                          "--f32-reference", "--dump", str(out / f"{name}-f32.safetensors"),
                          "--image-out", str(out / f"{name}-f32.png"), *common],
                         out / f"{name}-f32.log")
            row["image_vs_f32"] = {side: image_distance(out / f"{name}-{side}.png", out / f"{name}-f32.png")
                                   for side in ("ours", "diffusers")}
            ref = out / f"{name}-f32.safetensors"
            row["components"] = {
                "ours": component_errors(out / f"{name}-ours.safetensors", ref),
                "diffusers": component_errors(out / f"{name}-diffusers.safetensors", ref),
            }
        if not args.only and args.match_guidance is not None:
            row["image_match"] = match_images(args, name, model, size, out)
        results[name] = row
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print_table({name: row})


def print_table(results):
    metrics = [("text encoding (ms)", "text_encode_ms"), ("UNet step, CFG (ms)", "unet_step_ms"),
               ("UNet step, host enqueue only (ms)", "unet_enqueue_ms"),
               ("VAE decode (ms)", "vae_decode_ms"), ("end to end (s/image)", "end_to_end_s"),
               ("peak GPU memory (MiB)", "peak_process_mib")]
    print("\n| model | metric | sd-worker | diffusers | ours/diffusers |\n|---|---|---|---|---|")
    for name, row in results.items():
        for label, key in metrics:
            ours, ref = row.get("ours", {}).get(key), row.get("diffusers", {}).get(key)
            ratio = f"{ours / ref:.2f}" if ours and ref else "-"
            fmt = lambda v: "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")  # noqa: E731
            print(f"| {name} | {label} | {fmt(ours)} | {fmt(ref)} | {ratio} |")
        if "image" in row:
            d = row["image"]
            print(f"| {name} | image difference | max {d['max_abs']:.0f}/255, mean {d['mean_abs']:.2f}/255, "
                  f"PSNR {d['psnr_db']:.1f} dB | | |")
        for side, d in row.get("image_vs_f32", {}).items():
            print(f"| {name} | image: {side} vs diffusers f32 | max {d['max_abs']:.0f}/255, mean {d['mean_abs']:.2f}/255, "
                  f"PSNR {d['psnr_db']:.1f} dB | | |")
        if "image_match" in row:
            m = row["image_match"]
            for label, key in [("ours vs diffusers", "ours_vs_diffusers"), ("ours vs diffusers f32", "ours_vs_f32"),
                               ("diffusers vs diffusers f32", "diffusers_vs_f32")]:
                d = m[key]
                print(f"| {name} | image at guidance {m['guidance']:g}: {label} | max {d['max_abs']:.0f}/255, "
                      f"mean {d['mean_abs']:.2f}/255, PSNR {d['psnr_db']:.1f} dB | | |")
        components = row.get("components", {})
        for key in components.get("ours", {}):
            o, r = components["ours"][key], components["diffusers"][key]
            print(f"| {name} | {key} vs f32 reference (max / mean relative) | {o['max_rel']:.1e} / {o['mean_rel']:.1e} "
                  f"| {r['max_rel']:.1e} / {r['mean_rel']:.1e} | {o['mean_rel'] / max(r['mean_rel'], 1e-12):.2f} |")


if __name__ == "__main__":
    main()
