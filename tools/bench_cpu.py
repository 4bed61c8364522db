#!/usr/bin/env python3
"""sd-worker against PyTorch diffusers on this machine's CPU: same random full-size SD 1.5 folder, f32, same run.

    python3 tools/make_full_size_checkpoint.py sd15 /tmp/sd15-full      # once: writes /tmp/sd15-full/sd15/
    python3 tools/bench_cpu.py --worker target/release/sd-worker --model /tmp/sd15-full/sd15 [--rounds 2]

Every measurement runs in its own process, ours and PyTorch's interleaved (round 1: torch, ours; round 2:
ours, torch; ...) so that load from other processes on a shared machine hits both alike. Per round and side:
  components  one CFG UNet step (batch 2, 64x64 latents) and one VAE decode 512^2, `--repeats` timed each after
              one warm-up (min and median over all rounds are printed);
  image       a whole 512^2 image with `--steps` (default 2) steps, CFG 7, the folder's scheduler; the 20-step
              figure is extrapolated as image(steps) + (20 - steps) * median UNet step (said so in the table);
  turbo       SD-Turbo style: 1 step, guidance 0 (no CFG), 512^2, one warm-up then timed.
Peak RSS of every process comes from wait4(). PyTorch runs with torch.set_num_threads(cores); ours with rayon's
default (one thread per core). `--worker-args` passes extra flags to ours (e.g. `--dtype bf16`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROMPT = "a photograph of an astronaut riding a horse"


def torch_child(args):
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(os.cpu_count())
    pipe = StableDiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.float32, safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    def timed(fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        return times

    with torch.inference_mode():
        if args.child_what == "components":
            emb, neg = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, negative_prompt="")
            context = torch.cat([neg, emb])
            pipe.scheduler.set_timesteps(20)
            t = pipe.scheduler.timesteps[0]
            latents = torch.randn((1, 4, 64, 64), generator=torch.Generator().manual_seed(0))

            def unet_step():
                x = pipe.scheduler.scale_model_input(torch.cat([latents] * 2), t)
                uncond, text = pipe.unet(x, t, encoder_hidden_states=context).sample.chunk(2)
                return uncond + 7.0 * (text - uncond)

            out["unet_step_runs_ms"] = timed(unet_step, 1, args.repeats)
            out["vae_decode_runs_ms"] = timed(
                lambda: pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample, 1, args.repeats)
        else:
            steps, guidance = (args.steps, 7.0) if args.child_what == "image" else (1, 0.0)

            def generate():
                g = torch.Generator().manual_seed(0)
                pipe(PROMPT, negative_prompt="" if guidance > 1 else None, height=512, width=512,
                     num_inference_steps=steps, guidance_scale=guidance, generator=g)

            out["end_to_end_runs_s"] = [t / 1000 for t in timed(generate, 1 if steps == 1 else 0, 1)]
    print(json.dumps(out))


def measure(args, side, what):
    """One process of `side` ('torch'/'ours') measuring `what`; adds its peak RSS (MiB)."""
    if side == "torch":
        cmd = [sys.executable, __file__, "--child", "torch", "--child-what", what, "--model", args.model,
               "--repeats", str(args.repeats), "--steps", str(args.steps)]
    else:
        steps, guidance, reps, runs = {
            "components": (20, 7.0, args.repeats, 0),
            "image": (args.steps, 7.0, 0, 1),
            "turbo": (1, 0.0, 0, 1),
        }[what]
        cmd = [args.worker, "bench", "--model", args.model, "--device", "cpu", "--width", "512", "--height", "512",
               "--steps", str(steps), "--guidance", str(guidance), "--repeats", str(reps), "--runs", str(runs),
               "--warmup", "1" if what != "image" else "0", *args.worker_args.split()]
    # wait4 on our own child gives that process's peak RSS; output goes to files (no pipe to fill up).
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{side} {what} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["process_s"] = wall
    print(f"  {side:5s} {what:10s} {wall:7.1f} s  peak RSS {result['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", default="target/release/sd-worker")
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--worker-args", default="")
    ap.add_argument("--skip", default="", help="comma list of components,image,turbo to leave out")
    ap.add_argument("--json-out")
    ap.add_argument("--child")
    ap.add_argument("--child-what")
    args = ap.parse_args()
    if args.child == "torch":
        return torch_child(args)
    if not os.path.isabs(args.worker):
        args.worker = os.path.abspath(args.worker)

    whats = [w for w in ("components", "image", "turbo") if w not in args.skip.split(",")]
    results = {side: {w: [] for w in whats} for side in ("torch", "ours")}
    for r in range(args.rounds):
        for what in whats:
            order = ("torch", "ours") if r % 2 == 0 else ("ours", "torch")
            for side in order:
                results[side][what].append(measure(args, side, what))

    def runs(side, what, key):
        return [v for res in results[side].get(what, []) for v in res.get(key) or [] if v is not None]

    def stat(values):
        return (min(values), statistics.median(values)) if values else (float("nan"), float("nan"))

    rows = []

    def row(name, t, o, unit):
        (tmin, tmed), (omin, omed) = stat(t), stat(o)
        rows.append((name, tmin, tmed, omin, omed, unit, omin / tmin if t and o else float("nan"),
                     omed / tmed if t and o else float("nan")))

    if "components" in whats:
        row("UNet CFG step (batch 2, 64x64)", [v / 1000 for v in runs("torch", "components", "unet_step_runs_ms")],
            [v / 1000 for v in runs("ours", "components", "unet_step_runs_ms")], "s")
        row("VAE decode 512^2", [v / 1000 for v in runs("torch", "components", "vae_decode_runs_ms")],
            [v / 1000 for v in runs("ours", "components", "vae_decode_runs_ms")], "s")
    if "image" in whats:
        row(f"image, {args.steps} steps (measured)", runs("torch", "image", "end_to_end_runs_s"),
            runs("ours", "image", "end_to_end_runs_s"), "s")
        if "components" in whats:
            extra = 20 - args.steps
            t_step = stat([v / 1000 for v in runs("torch", "components", "unet_step_runs_ms")])[1]
            o_step = stat([v / 1000 for v in runs("ours", "components", "unet_step_runs_ms")])[1]
            row(f"image, 20 steps (extrapolated: {args.steps}-step + {extra} x median step)",
                [v + extra * t_step for v in runs("torch", "image", "end_to_end_runs_s")],
                [v + extra * o_step for v in runs("ours", "image", "end_to_end_runs_s")], "s")
    if "turbo" in whats:
        row("SD-Turbo style 1 step, no CFG, 512^2", runs("torch", "turbo", "end_to_end_runs_s"),
            runs("ours", "turbo", "end_to_end_runs_s"), "s")
    for what in whats:
        row(f"peak RSS ({what} process)", [r["peak_rss_mib"] for r in results["torch"][what]],
            [r["peak_rss_mib"] for r in results["ours"][what]], "MiB")

    print(f"\nCPU: {os.cpu_count()} threads; rounds {args.rounds}, repeats {args.repeats}; worker args "
          f"'{args.worker_args}'. min / median over every timed run; ratio = ours / PyTorch.")
    print(f"| measure | PyTorch min | PyTorch median | sd-worker min | sd-worker median | ratio min | ratio median |")
    print("|---|---|---|---|---|---|---|")
    for name, tmin, tmed, omin, omed, unit, rmin, rmed in rows:
        print(f"| {name} | {tmin:.2f} {unit} | {tmed:.2f} {unit} | {omin:.2f} {unit} | {omed:.2f} {unit} | "
              f"{rmin:.2f} | {rmed:.2f} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
