#!/usr/bin/env bash
# End-to-end test of the OpenAI and A1111 compatibility APIs with the real client libraries (`openai`,
# `webuiapi`, versions pinned in requirements.txt) against the real `sd-worker serve` on the tiny fixture
# model, with an API key (so the OpenAI client sends Bearer and webuiapi sends HTTP Basic).
# Needs python3 with venv and network access to PyPI. Exits non-zero if any client call fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v python3 >/dev/null || { echo "tests/clients/run.sh: python3 is required" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
venv="${CLIENTS_VENV:-$target/clients-venv}"

echo "== client libraries into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt

echo "== sd-worker"
cargo build --quiet -p sd-worker
binary="$target/debug/sd-worker"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="e2e-$RANDOM$RANDOM"
log="$(mktemp -t sd-worker-clients.XXXXXX.log)"
"$binary" serve --model tests/fixtures/models/tiny-sd1 --port "$port" --api-key "$key" \
    --preview-interval 1ms >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
ready=no
for _ in $(seq 1 600); do
    if python3 -c "import urllib.request; urllib.request.urlopen('$base/ready', timeout=1)" 2>/dev/null; then
        ready=yes
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then
        echo "sd-worker exited before it was ready; log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.2
done
if [ "$ready" != yes ]; then
    echo "sd-worker was not ready after 120 s; log:" >&2
    cat "$log" >&2
    exit 1
fi

echo "== client checks against $base"
status=0
"$venv/bin/python" tests/clients/e2e.py "$base" "$key" tiny-sd1 || status=1
echo "== COMPAT.md curl examples"
"$venv/bin/python" tests/clients/curl_examples.py "$base" "$key" || status=1
if [ "$status" != 0 ]; then
    echo "--- sd-worker log (last 80 lines)" >&2
    tail -n 80 "$log" >&2
fi
exit "$status"
