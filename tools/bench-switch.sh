#!/usr/bin/env bash
# Benchmark (not a test): what switching models costs a job, through the service as a user meets it. Makes a
# full-size random-weight SD 1.5 diffusers folder (tools/make_full_size_checkpoint.py, f16) and puts it in a
# models dir under two names (`model-a`, `model-b`: two library models, so each switch is a real unload and
# load of every weight), starts `sd-worker serve --models-dir` (one loaded model at a time, the default), waits
# for the background hashes, then per round runs jobs naming
#   A (no switch), B (switch), A (switch), A (no switch)
# and prints each job's total time (submitted -> finished; one job at a time, so no queueing). The switch
# cost is the mean of the switching jobs minus the mean of the others.
#   tools/bench-switch.sh [SIZE] [STEPS] [ROUNDS] [DEVICE]      (default 64 1 2 cpu)
# Environment: SD_WORKER_BIN (default target/release/sd-worker), BENCH_DIR (default /tmp/sd-bench-switch).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-64} steps=${2:-1} rounds=${3:-2} device=${4:-cpu}
bin=${SD_WORKER_BIN:-target/release/sd-worker}
dir=${BENCH_DIR:-/tmp/sd-bench-switch}
mkdir -p "$dir/models"
[ -d "$dir/sd15" ] || python3 tools/make_full_size_checkpoint.py sd15 "$dir" --dtype f16 >/dev/null
rm -f "$dir/sd15.safetensors" # only the folder is used
for name in model-a model-b; do [ -e "$dir/models/$name" ] || ln -s "$dir/sd15" "$dir/models/$name"; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --models-dir "$dir/models" --model model-a --device "$device" --port "$port" \
  > "$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port"
until curl -sf "$url/ready" >/dev/null; do sleep 1; kill -0 $pid; done
# The background hasher reads both folders once; wait so that it does not compete with the timed jobs.
until [ "$(curl -sf "$url/v1/models" | jq '[.data[] | select(.hash == null)] | length')" = 0 ]; do sleep 1; done
job() { # model -> total_ms
  local id
  id=$(curl -sf "$url/v1/jobs" -H 'Content-Type: application/json' -d "$(jq -n \
    --arg m "$1" --argjson s "$size" --argjson n "$steps" \
    '{operation:"image_generation",prompt:"a lighthouse",model:$m,width:$s,height:$s,steps:$n,seed:1}')" \
    | jq -r .job_id)
  while :; do
    local r; r=$(curl -sf "$url/v1/jobs/$id")
    case $(jq -r .status <<<"$r") in
      succeeded) jq -r .timings.total_ms <<<"$r"; return ;;
      failed|cancelled) echo "job failed: $r" >&2; exit 1 ;;
    esac
    sleep 0.1
  done
}
job model-a >/dev/null # warm up
plain=() switched=()
for _ in $(seq "$rounds"); do
  plain+=("$(job model-a)"); switched+=("$(job model-b)"); switched+=("$(job model-a)")
  plain+=("$(job model-a)")
done
loads=$(curl -sf "$url/metrics" | awk '/^sd_worker_model_loads_total/ {print $2}')
mean() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(f"{sum(v)/len(v):.0f}")' "$@"; }
p=$(mean "${plain[@]}") s=$(mean "${switched[@]}")
echo "device=$device size=${size}x${size} steps=$steps rounds=$rounds SD 1.5 f16 folder (total_ms per job; loads=$loads)"
echo "jobs without a switch:  $p ms  (${plain[*]})"
echo "jobs after a switch:    $s ms  (${switched[*]})"
echo "switch cost:            $((s - p)) ms"
