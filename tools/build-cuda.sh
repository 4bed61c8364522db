#!/usr/bin/env bash
# Builds the CUDA binary on a machine without a GPU or a CUDA install, for the device machine (H100, driver 580).
#
#   tools/build-cuda.sh                 # -> target/cuda/release/sd-worker with `--features cudnn` (cuda + cuDNN convs)
#   FEATURES=cuda tools/build-cuda.sh   # without cuDNN (candle's im2col convolutions)
#   TESTS=1 tools/build-cuda.sh         # also the sd-core test binary with the GPU kernel tests (target/cuda/sd-core-tests)
#
# CUDA 13.0's compiler comes from PyPI wheels (a newer nvcc emits PTX that driver 580 cannot load); candle links
# cudarc dynamically, so the link folder holds unversioned symlinks and a stub libcuda.so that only satisfies the
# linker. It is passed through LIBRARY_PATH, never RUSTFLAGS: changing RUSTFLAGS rebuilds every kernel (~30 min).
# On the device machine run the binary with (cuDNN 9 comes with PyTorch there)
#   export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib
set -euo pipefail
cd "$(dirname "$0")/.."
CT=${CUDA_TOOLCHAIN_DIR:-/opt/cuda-pypi}
if ! ls "$CT"/venv/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  mkdir -p "$CT" && python3 -m venv "$CT/venv"
  "$CT/venv/bin/pip" install -q "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-nvrtc==13.0.*" "nvidia-cublas==13.0.*" nvidia-curand
fi
FEATURES=${FEATURES:-cudnn}
if [[ $FEATURES == *cudnn* ]] && ! ls "$CT"/venv/lib/python3*/site-packages/nvidia/cudnn/lib/libcudnn.so.9 >/dev/null 2>&1; then
  "$CT/venv/bin/pip" install -q "nvidia-cudnn-cu13==9.*"
fi
CUDA_ROOT=$(ls -d "$CT"/venv/lib/python3*/site-packages/nvidia/cu13 | head -1)
LIB=$CUDA_ROOT/lib
if [ ! -e "$CT/link/libcuda.so" ]; then
  cargo fetch >/dev/null
  mkdir -p "$CT/link" "$CT/stub"
  # Every driver entry point cudarc may reference, as empty functions: enough for the linker.
  grep -rhoE "^\s+fn (cu[A-Za-z0-9_]+)\(" ~/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs \
    | awk '{print $2}' | tr -d '(' | sort -u | sed 's/.*/void &(void){}/' > "$CT/stub/libcuda.c"
  gcc -shared -fPIC -o "$CT/stub/libcuda.so" -Wl,-soname,libcuda.so.1 "$CT/stub/libcuda.c"
  ln -sf "$CT/stub/libcuda.so" "$CT/link/libcuda.so"
  for l in cublas cublasLt cudart nvrtc; do ln -sf "$LIB/lib$l.so.13" "$CT/link/lib$l.so"; done
  ln -sf "$(ls "$LIB"/libcurand.so.* | head -1)" "$CT/link/libcurand.so"
fi
if [[ $FEATURES == *cudnn* ]] && [ ! -e "$CT/link/libcudnn.so" ]; then
  ln -sf "$(ls "$CT"/venv/lib/python3*/site-packages/nvidia/cudnn/lib/libcudnn.so.9 | head -1)" "$CT/link/libcudnn.so"
fi
export CUDA_ROOT PATH="$CUDA_ROOT/bin:$PATH" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH="$CT/link${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
cargo build --release -p sd-worker --features "$FEATURES"
echo "built $CARGO_TARGET_DIR/release/sd-worker"
if [ -n "${TESTS:-}" ]; then
  # The GPU kernel tests (fused ops against their candle-nn compositions) live in sd-core's unit tests.
  bin=$(cargo test --release -p sd-core --features "$FEATURES" --lib --no-run --message-format=json \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  cp "$bin" "$CARGO_TARGET_DIR/sd-core-tests"
  echo "built $CARGO_TARGET_DIR/sd-core-tests"
fi
