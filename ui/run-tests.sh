#!/usr/bin/env bash
# Installs the UI workspace (npm ci) and runs its unit tests (Vitest: SDK, hooks), type checks, the check
# that the bundle embedded in crates/sd-server is up to date, and the browser tests (Debian chromium via
# playwright-core). For .ci/run; also fine by hand.
#   SD_WORKER_BIN=/path/to/sd-worker ui/run-tests.sh   # e2e against the real worker (tiny fixture model,
#                                                      # --lora-dir tests/fixtures/loras/tiny-sd1)
#   SD_E2E_URL=http://127.0.0.1:8600 ui/run-tests.sh   # e2e against a worker already running
# Without either, the e2e tests run against mock-server/ serving the freshly built app.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq chromium >/dev/null
fi

npm ci --no-audit --no-fund
npm run typecheck
node scripts/check-packages.mjs
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile="$results/unit.json"
./build-and-embed.sh --check
(cd app && npx vite build --logLevel warn)
# The real worker lists the fixture LoRAs, which the LoRA picker test expects (SD_WORKER_LORA_DIR overrides).
export SD_WORKER_LORA_DIR="${SD_WORKER_LORA_DIR:-tests/fixtures/loras/tiny-sd1}"
npx vitest run --config e2e/vitest.config.ts --reporter=default --reporter=json --outputFile="$results/e2e.json"

# One plain closing line for CI: "ui: N passed, N failed".
node -e '
  const runs = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
  const sum = (key) => runs.reduce((n, r) => n + r[key], 0);
  console.log(`ui: ${sum("numPassedTests")} passed, ${sum("numFailedTests")} failed`);
' "$results/unit.json" "$results/e2e.json"
