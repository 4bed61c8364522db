#!/usr/bin/env bash
# Saves a running worker's OpenAPI document where the SDK's tests compare it with the SDK's types:
#   ui/save-openapi.sh http://127.0.0.1:8600 [API_KEY]
# then `npx vitest run --project sdk` (in ui/) fails on any field the two disagree on.
set -euo pipefail
url=${1:?usage: save-openapi.sh WORKER_URL [API_KEY]}
out="$(dirname "$0")/packages/sdk/openapi/worker.json"
auth=()
[ -n "${2:-}" ] && auth=(-H "Authorization: Bearer $2")
curl -fsS "${auth[@]}" "$url/openapi.json" | python3 -m json.tool --indent 2 > "$out"
echo "saved $out"
