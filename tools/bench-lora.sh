#!/usr/bin/env bash
# Benchmark (not a test): the time one SD 1.5-architecture LoRA adds to a job, through the service as a user
# meets it. Makes a full-size random-weight SD 1.5 folder (tools/make_full_size_checkpoint.py) and a kohya LoRA
# of rank 16 on every attention/feed-forward projection of the UNet and every text-encoder projection (what
# common SD 1.5 LoRAs touch), starts `sd-worker serve --lora-dir`, then runs jobs in this order:
#   base, lora, base, lora, ...   (each LoRA job merges and each base job restores: the worst case)
#   lora, lora, ...               (the same LoRA again: merged weights are kept)
# and prints each job's total time (submitted -> finished; jobs run one at a time, so no queueing).
#   tools/bench-lora.sh [SIZE] [STEPS] [ROUNDS] [DEVICE]      (default 256 10 3 cpu)
# Environment: SD_WORKER_BIN (default target/release/sd-worker), BENCH_DIR (default /tmp/sd-bench-lora).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-256} steps=${2:-10} rounds=${3:-3} device=${4:-cpu}
bin=${SD_WORKER_BIN:-target/release/sd-worker}
dir=${BENCH_DIR:-/tmp/sd-bench-lora}
mkdir -p "$dir/loras"
[ -d "$dir/sd15" ] || python3 tools/make_full_size_checkpoint.py sd15 "$dir" --dtype f16 >/dev/null
[ -f "$dir/loras/bench.safetensors" ] || python3 - "$dir" <<'PY'
import sys, torch
from safetensors import safe_open
from safetensors.torch import save_file
out = sys.argv[1]
torch.manual_seed(0)
lora = {}
def add(prefix, path, wanted):
    with safe_open(path, "pt") as f:
        for key in f.keys():
            if not key.endswith(".weight") or not any(key[:-7].endswith(w) for w in wanted):
                continue
            shape = f.get_slice(key).get_shape()
            if len(shape) != 2:
                continue
            name = prefix + key[: -len(".weight")].replace(".", "_")
            lora[name + ".lora_down.weight"] = (torch.randn(16, shape[1]) * 0.01).half()
            lora[name + ".lora_up.weight"] = (torch.randn(shape[0], 16) * 0.01).half()
            lora[name + ".alpha"] = torch.tensor(8.0)
add("lora_unet_", f"{out}/sd15/unet/diffusion_pytorch_model.safetensors",
    ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"])
add("lora_te_", f"{out}/sd15/text_encoder/model.safetensors",
    ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
save_file(lora, f"{out}/loras/bench.safetensors")
print(len(lora) // 3, "modules", file=sys.stderr)
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --model "$dir/sd15" --device "$device" --lora-dir "$dir/loras" --port "$port" \
  --max-queue 64 > "$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/ready')" 2>/dev/null; do sleep 1; kill -0 $pid; done
job() { # prompt -> total_ms (python, not jq/curl: the GPU machine has only python3)
  python3 - "$port" "$1" "$size" "$steps" <<'PY'
import json, sys, time, urllib.request
port, prompt, size, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = f"http://127.0.0.1:{port}/v1/jobs"
body = {"operation": "image_generation", "prompt": prompt, "width": size, "height": size, "steps": steps, "seed": 1}
req = urllib.request.Request(base, json.dumps(body).encode(), {"Content-Type": "application/json"})
job_id = json.load(urllib.request.urlopen(req))["job_id"]
while True:
    r = json.load(urllib.request.urlopen(f"{base}/{job_id}"))
    if r["status"] == "succeeded":
        print(r["timings"]["total_ms"])
        break
    if r["status"] in ("failed", "cancelled"):
        sys.exit(f"job failed: {r}")
    time.sleep(0.05)
PY
}
for _ in 1 2 3; do job "warm up" >/dev/null; done
base=() alternating=() repeated=()
for _ in $(seq "$rounds"); do
  base+=("$(job "a lighthouse")"); alternating+=("$(job "a lighthouse <lora:bench:0.8>")")
done
for _ in $(seq "$rounds"); do repeated+=("$(job "a lighthouse <lora:bench:0.8>")"); done
mean() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(f"{sum(v)/len(v):.0f}")' "$@"; }
median() { python3 -c 'import sys, statistics; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.0f}")' "$@"; }
pct() { python3 -c "print(f'{100*($1-$2)/$2:.1f}')"; }
b=$(mean "${base[@]}") a=$(mean "${alternating[@]}") r=$(mean "${repeated[@]}")
mb=$(median "${base[@]}") ma=$(median "${alternating[@]}") mr=$(median "${repeated[@]}")
echo "device=$device size=${size}x${size} steps=$steps rounds=$rounds (total_ms per job; the first LoRA job also reads the file)"
echo "base jobs:                      mean $b ms, median $mb ms  (${base[*]})"
echo "LoRA jobs after a base job:     mean $a ms, median $ma ms  (${alternating[*]})"
echo "                                added: mean $((a - b)) ms = $(pct "$a" "$b")%, median $((ma - mb)) ms = $(pct "$ma" "$mb")%"
echo "LoRA jobs after the same LoRA:  mean $r ms, median $mr ms  (${repeated[*]})"
echo "                                added: mean $((r - b)) ms = $(pct "$r" "$b")%, median $((mr - mb)) ms = $(pct "$mr" "$mb")%"
