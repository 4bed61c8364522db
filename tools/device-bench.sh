#!/usr/bin/env bash
# The GPU-machine side of the CUDA benchmark, as run for the README's table. From a checkout that carries
#   .cudabin/sdw.xz   the CUDA binary: tools/build-cuda.sh && xz -c target/cuda/release/sd-worker > .cudabin/sdw.xz
#   .whl/             diffusers + importlib_metadata wheels (pip download --no-deps --only-binary=:all: ...)
# run   tools/device-bench.sh STEP...   with steps, in order:
#   check   the fused-kernel checks on the tiny fixture model; turns flash attention off for `bench` if its
#           check fails (the other kernels abort the bench themselves)
#   bench   tools/bench_cuda.py on full-size SD 1.5 and SDXL (BENCH_ARGS are passed on), table on stdout,
#           results.json and the log in $OUT
#   ncu     per-kernel GPU time of the one profiled UNet step of `sd-worker bench` (NCU_MODELS, default sd15),
#           CSV in $OUT; needs `bench` (or an earlier run) to have written the models
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-bench-out}
mkdir -p "$OUT"
NV=${NV:-/opt/torch/.venv/lib/python3.12/site-packages/nvidia}
export LD_LIBRARY_PATH=$NV/cu13/lib:$NV/cudnn/lib:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
xz -dc .cudabin/sdw.xz > /tmp/sdw && chmod +x /tmp/sdw || exit 1
MODELS=/tmp/sd-bench-models
WORKER_ARGS=""
for step in "$@"; do
  case $step in
    check)
      /tmp/sdw bench --model tests/fixtures/models/tiny-sd1 --device cuda --width 64 --height 64 --steps 2 \
        --runs 0 --repeats 1 --flash-attention false > "$OUT/check.json" 2> /tmp/check.err || { tail /tmp/check.err; exit 1; }
      WORKER_ARGS=$(python3 - "$OUT/check.json" <<'PY'
import json, sys
checks = json.load(open(sys.argv[1]))["kernel_checks"]
bad = [c for c in checks if c["relative_max_diff"] > c["tolerance"]]
print(f"{len(checks)} kernel checks, {len(bad)} failed", *bad, sep="\n", file=sys.stderr)
print("--flash-attention false" if any(c["kernel"] == "flash_attention" for c in bad) else "")
PY
      )
      echo "worker args: [$WORKER_ARGS]" ;;
    bench)
      timeout 580 python3 tools/bench_cuda.py --worker /tmp/sdw --out /tmp/bench-out --model-dir "$MODELS" \
        --worker-args "$WORKER_ARGS" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
      cp /tmp/bench-out/results.json "$OUT/" ;;
    ncu)
      for m in ${NCU_MODELS:-sd15}; do
        timeout 200 ncu --profile-from-start off --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
          /tmp/sdw bench --model "$MODELS/$m" --device cuda --runs 0 --repeats 1 $WORKER_ARGS > "$OUT/ncu-$m.csv" 2>/dev/null
        echo "ncu $m: $?"
      done ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
