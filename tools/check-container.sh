#!/usr/bin/env bash
# Checks a Dockerfile without a container engine (none runs on our CI machines):
#  - its shape: multi-stage, a non-root USER, a HEALTHCHECK on /health, the model directory as a VOLUME;
#  - that the runtime stage provides every shared library the binary needs (readelf's NEEDED entries): each is
#    either part of the runtime base image (glibc and libgcc in Debian/Ubuntu images; CUDA's and cuDNN's
#    runtime libraries in nvidia/cuda *-cudnn-runtime images; libcuda from the host driver), or belongs (by
#    `dpkg -S` on this machine) to a package the runtime stage installs with apt-get.
#
#   tools/check-container.sh target/release/sd-worker Dockerfile
#   tools/check-container.sh target/cuda/release/sd-worker Dockerfile.cuda
set -euo pipefail
binary=${1:?usage: check-container.sh BINARY DOCKERFILE}
dockerfile=${2:?usage: check-container.sh BINARY DOCKERFILE}
problems=()

# The runtime stage: everything after the last FROM.
# Continuation lines joined first, so an instruction is one line.
joined=$(sed -e ':a' -e '/\\$/N; s/\\\n */ /; ta' "$dockerfile")
runtime=$(awk '/^FROM /{stage=""} {stage=stage $0 "\n"} END{printf "%s", stage}' <<<"$joined")
base=$(grep -m1 '^FROM ' <<<"$runtime" | awk '{print $2}')
[ "$(grep -c '^FROM ' "$dockerfile")" -ge 2 ] || problems+=("not multi-stage: build tools would ship in the image")
grep -qE '^USER +[^r0 ]' <<<"$runtime" || problems+=("the runtime stage runs as root: add a USER")
grep -qE '^HEALTHCHECK .*/health' <<<"$runtime" || problems+=("no HEALTHCHECK on /health in the runtime stage")
grep -qE '^VOLUME .*/models' <<<"$runtime" || problems+=("the model directory is not a VOLUME")

# Packages the runtime stage installs (the words after `apt-get install`, minus options, up to the next && or ;).
installed=$(tr '\n' ' ' <<<"$runtime" | grep -oE 'apt-get install[^&;]*' | sed -E 's/apt-get install//; s/(^| )-[^ ]*//g' | tr ' ' '\n' | sed '/^$/d' | sort -u)

provided_by_base() {
  local lib=$1
  case "$lib" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libgcc_s.so.*|libutil.so.*) return 0 ;;
  esac
  case "$base" in
    nvidia/cuda:*cudnn-runtime*)
      case "$lib" in
        libcuda.so.*|libcudart.so.*|libcublas.so.*|libcublasLt.so.*|libcurand.so.*|libnvrtc.so.*|libcudnn*.so.*|libstdc++.so.*) return 0 ;;
      esac ;;
  esac
  return 1
}

needed=$(readelf -d "$binary" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p')
[ -n "$needed" ] || problems+=("readelf found no NEEDED entries in $binary (not a dynamic ELF binary?)")
for lib in $needed; do
  if provided_by_base "$lib"; then
    echo "  $lib: in the base image ($base)"
    continue
  fi
  # By file name: with merged /usr, ldconfig's path and dpkg's record of it can differ in their prefix.
  pkg=$(dpkg -S "*/$lib" 2>/dev/null | cut -d: -f1 | grep -v -- '-dev$' | head -1 || true)
  if [ -z "$pkg" ]; then
    problems+=("$lib: no Debian package on this machine provides it, and the base image $base does not")
  elif grep -qx "$pkg" <<<"$installed"; then
    echo "  $lib: from $pkg, installed by the runtime stage"
  else
    problems+=("$lib comes from the package $pkg, which the runtime stage does not install")
  fi
done

if [ ${#problems[@]} -gt 0 ]; then
  for problem in "${problems[@]}"; do echo "$dockerfile: $problem" >&2; done
  exit 1
fi
echo "$dockerfile: runtime stage ($base) provides all $(wc -w <<<"$needed") libraries $binary needs"
