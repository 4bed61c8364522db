#!/usr/bin/env bash
# Runs crates/sd-client/tests/wasm_browser.rs (wasm-bindgen-test) in headless Chromium against the real
# worker on the tiny fixture model; the worker allows any origin (--cors-origin '*') because the test page is
# served by wasm-bindgen-test-runner on a port of its own. Needs chromium + chromium-driver (Debian),
# the wasm32 target and wasm-bindgen-cli at the version in Cargo.lock (see tools/build-wasm-sdk.sh).
#   tools/test-wasm-sdk.sh [path/to/sd-worker]   (default target/debug/sd-worker, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/sd-worker}
[ -x "$bin" ] || cargo build -p sd-worker
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin" serve --model tests/fixtures/models/tiny-sd1 --port "$port" --cors-origin '*' >"$log" 2>&1 &
worker=$!
trap 'kill "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  kill -0 "$worker" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { echo "worker not ready"; cat "$log"; exit 1; }

export CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver)}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-180}
export SD_WASM_TEST_WORKER="http://127.0.0.1:$port"
cargo test -p sd-client --target wasm32-unknown-unknown --test wasm_browser
