#!/usr/bin/env bash
# Configures and builds qllm in build/release (Release; CUDA when nvcc is found).
# On a machine with a GPU the kernels are built for that GPU only; without one, for sm_80 and sm_90 (a compile
# check of both code paths, Ampere's and Hopper's, kept short for CI); set CUDA_ARCHS to override (e.g.
# CUDA_ARCHS="80;86;89;90").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"

build_dir=${BUILD_DIR:-build/release}
args=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release)
if command -v nvcc >/dev/null; then
  if [[ -z "${CUDA_ARCHS:-}" ]]; then
    # The GPU's own architecture (e.g. 9.0 -> 90); sm_80 and sm_90 without a GPU, as a compile check.
    CUDA_ARCHS=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . || true)
    [[ -n "$CUDA_ARCHS" ]] || CUDA_ARCHS="80;90"
  fi
  args+=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS")
fi
cmake "${args[@]}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
