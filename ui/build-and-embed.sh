#!/usr/bin/env bash
# Rebuilds the web UI and embeds it in the worker: app/dist -> crates/sd-server/ui-dist/, and regenerates
# crates/sd-server/src/ui/assets.rs (the include_bytes! list). Commit both afterwards.
#   ui/build-and-embed.sh           rebuild and embed
#   ui/build-and-embed.sh --check   fail if the committed bundle differs from a fresh build (CI)
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd .. && pwd)
dest="$repo/crates/sd-server/ui-dist"
assets_rs="$repo/crates/sd-server/src/ui/assets.rs"

[ -d node_modules ] || npm ci --no-audit --no-fund

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd app && npx vite build --logLevel warn --outDir "$tmp/dist" --emptyOutDir)
  node scripts/write-assets-rs.mjs "$tmp/dist" "$tmp/assets.rs"
  if ! diff -r "$tmp/dist" "$dest" >/dev/null || ! diff "$tmp/assets.rs" "$assets_rs" >/dev/null; then
    echo "the embedded UI bundle is out of date: run ui/build-and-embed.sh and commit the result" >&2
    diff -r "$tmp/dist" "$dest" | head -20 >&2 || true
    exit 1
  fi
  echo "embedded UI bundle is up to date"
  exit 0
fi

(cd app && npx vite build --logLevel warn)
rm -rf "$dest"
mkdir -p "$dest" "$(dirname "$assets_rs")"
cp -R app/dist/. "$dest/"
node scripts/write-assets-rs.mjs "$dest" "$assets_rs"
echo "embedded $(find "$dest" -type f | wc -l) files ($(du -sh "$dest" | cut -f1)) into crates/sd-server"
