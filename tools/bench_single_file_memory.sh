#!/usr/bin/env bash
# Peak host memory and wall time of loading (and one tiny generation with) a full-size random-weight
# checkpoint as a diffusers folder and as the equivalent single LDM file (tools/make_full_size_checkpoint.py).
#   tools/bench_single_file_memory.sh sd15|sd21|sdxl [SD_WORKER_BINARY] [WORK_DIR]
set -euo pipefail
name=$1
bin=${2:-target/release/sd-worker}
work=${3:-/tmp/sd-single-file-bench}
python3 tools/make_full_size_checkpoint.py "$name" "$work" >/dev/null
extra=()
[ "$name" = sd21 ] && extra=(--prediction-type v_prediction)  # random weights defeat the 768-v test
for model in "$work/$name" "$work/$name.safetensors"; do
  python3 - "$bin" "$model" "${extra[@]}" <<'PY'
import resource, subprocess, sys, time
bin, model, *extra = sys.argv[1:]
args = [bin, "generate", "--model", model, "--prompt", "a photo of a cat", "--steps", "2", "--width", "64",
        "--height", "64", "--seed", "1", "--out", model + ".png"]
if model.endswith(".safetensors"):
    args += extra
start = time.time()
subprocess.run(args, check=True, stderr=subprocess.DEVNULL)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"{model}: wall {time.time() - start:.1f} s, peak RSS {peak:.2f} GiB")
PY
done
python3 - "$work/$name.png" "$work/$name.safetensors.png" <<'PY'
import sys
from PIL import Image
a, b = (Image.open(p).tobytes() for p in sys.argv[1:])
print("max pixel difference folder vs file:", max(abs(x - y) for x, y in zip(a, b)))
PY
