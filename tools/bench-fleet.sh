#!/usr/bin/env bash
# Fleet benchmark (not a test): throughput of a gateway + 1, 2 and 4 workers on the tiny model, and the
# latency a gateway adds per job compared with a single `serve --model` process.
# Usage: tools/bench-fleet.sh [JOBS] [STEPS]   (needs redis-server and a built target/debug/sd-worker;
# set SD_WORKER_BIN to use another binary, e.g. target/release/sd-worker)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-40}
STEPS=${2:-4}
BIN=${SD_WORKER_BIN:-target/debug/sd-worker}
MODEL=tests/fixtures/models/tiny-sd1
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build -p sd-worker" >&2; exit 1; }
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Submits JOBS jobs to BASE as fast as it can, waits for all; prints "jobs/s mean_latency_ms".
run_jobs() {
  python3 - "$1" "$JOBS" "$STEPS" <<'PY'
import json, sys, time, urllib.request
base, jobs, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as reply:
        return json.load(reply)
start = time.time()
ids = {}
for seed in range(jobs):
    job = call("POST", "/v1/jobs", {"operation": "image_generation", "prompt": "bench", "seed": seed,
                                    "steps": steps, "width": 64, "height": 64})
    ids[job["job_id"]] = time.time()
latencies = []
pending = set(ids)
while pending:
    for job_id in list(pending):
        job = call("GET", "/v1/jobs/" + job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            pending.discard(job_id)
            latencies.append(job["timings"]["total_ms"] - job["timings"]["queue_ms"])
    time.sleep(0.01)
elapsed = time.time() - start
print(f"{jobs / elapsed:.2f} {sum(latencies) / len(latencies):.1f}")
PY
}

wait_http() { for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# Single process: the reference.
PORT=$(free_port)
"$BIN" serve --model "$MODEL" --port "$PORT" --max-queue 1000 >"$WORK/single.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/ready"
read -r single_rate single_run <<<"$(run_jobs "http://127.0.0.1:$PORT")"
kill "${PIDS[-1]}"
echo "single process (serve --model): $single_rate jobs/s, run time per job ${single_run} ms"

# Per-job latency through the fleet, one job at a time (no queueing): submit -> succeeded seen.
latency() {
  python3 - "$1" "$STEPS" <<'PY'
import json, sys, time, urllib.request
base, steps = sys.argv[1], int(sys.argv[2])
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as reply:
        return json.load(reply)
total = []
for seed in range(10):
    t0 = time.time()
    job = call("POST", "/v1/jobs", {"operation": "image_generation", "prompt": "bench", "seed": seed,
                                    "steps": steps, "width": 64, "height": 64})
    while call("GET", "/v1/jobs/" + job["job_id"])["status"] != "succeeded":
        time.sleep(0.002)
    total.append((time.time() - t0) * 1000)
total.sort()
print(f"{total[len(total) // 2]:.1f}")
PY
}
PORT=$(free_port)
"$BIN" serve --model "$MODEL" --port "$PORT" >"$WORK/single2.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/ready"
single_latency=$(latency "http://127.0.0.1:$PORT")
kill "${PIDS[-1]}"

for workers in 1 2 4; do
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 & PIDS+=($!)
  sleep 0.3
  GPORT=$(free_port)
  "$BIN" serve --queue "redis://127.0.0.1:$RPORT" --port "$GPORT" --max-queue 1000 >"$WORK/gw.log" 2>&1 & PIDS+=($!)
  for i in $(seq "$workers"); do
    "$BIN" work --queue "redis://127.0.0.1:$RPORT" --model "$MODEL" --worker-id "w$i" >"$WORK/w$i.log" 2>&1 & PIDS+=($!)
  done
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$GPORT/metrics" | grep -q "sd_fleet_workers{model=\"tiny-sd1\"} $workers" && break
    sleep 0.1
  done
  read -r rate run <<<"$(run_jobs "http://127.0.0.1:$GPORT")"
  echo "fleet, $workers worker(s): $rate jobs/s, run time per job ${run} ms"
  if [ "$workers" = 1 ]; then
    fleet_latency=$(latency "http://127.0.0.1:$GPORT")
    echo "one job end to end (median of 10, submit -> succeeded seen by polling): single ${single_latency} ms, fleet ${fleet_latency} ms"
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  PIDS=()
  sleep 0.5
done
