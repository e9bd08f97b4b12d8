#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the qllm demo (the INT4 quantization table on
# the CPU reference; on a machine with a GPU also the CUDA kernels with their bandwidth).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
qllm=build/release/bin/qllm

echo; echo "== INT4 quantization error, CPU reference (seed table: GLOBAL 0.169577 ... g128 0.089447) =="
$qllm quant-error
if nvidia-smi -L >/dev/null 2>&1; then
  echo; echo "== INT4 quantization error and kernel bandwidth, CUDA =="
  $qllm quant-error --device cuda
fi
