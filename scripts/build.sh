#!/usr/bin/env bash
# Configures and builds qllm. Usage: scripts/build.sh [cmake --build arguments, e.g. --target qllm]
# Environment:
#   BUILD_DIR   build folder (default build/release)
#   QLLM_CUDA   ON/OFF: build the CUDA kernels (default: ON when nvcc is found). OFF gives the complete
#               CPU-only build, much faster to compile.
#   CUDA_ARCHS  GPU architectures; default: the GPU's own, or sm_90 without a GPU (a compile check of every
#               kernel, the sm_90a ones included, at half the time of adding sm_80; e.g. "80;90" for both)
#   CMAKE_ARGS  more configure arguments
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"

build_dir=${BUILD_DIR:-build/release}
args=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release)
if [[ -n "${QLLM_CUDA:-}" ]]; then
  args+=(-DQLLM_CUDA="$QLLM_CUDA")
fi
if command -v nvcc >/dev/null && [[ "${QLLM_CUDA:-ON}" != OFF ]]; then
  if [[ -z "${CUDA_ARCHS:-}" ]]; then
    CUDA_ARCHS=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . || true)
    [[ -n "$CUDA_ARCHS" ]] || CUDA_ARCHS="90"
  fi
  args+=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS")
fi
cmake "${args[@]}" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j "$(nproc)" "$@"
