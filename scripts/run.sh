#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the qllm demo (the INT4 quantization table on
# the CPU reference; on a machine with a GPU also the CUDA kernels with their bandwidth and the GEMM
# benchmark), then generates text with a Llama 3 checkpoint (QLLM_MODEL, default
# ../shared/models/proxy-llama-22m) when there is one.
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
  echo; echo "== W4A16 and LLM.int8() GEMMs vs cuBLAS bf16, Llama-3.2-1B shapes =="
  $qllm gemm-bench --modes g128,int8 --m 1,16,2048
fi

# A real checkpoint, when one is at hand: QLLM_MODEL, else the shared proxy model next to the checkout.
model=${QLLM_MODEL:-../shared/models/proxy-llama-22m}
if [[ -f $model/config.json ]]; then
  echo; echo "== Generation with $model (CPU reference engine) =="
  $qllm generate --model "$model" --prompt "The capital of France is" --max-tokens 32 --temperature 0
else
  echo; echo "(no model at $model: set QLLM_MODEL to a Hugging Face Llama 3 checkpoint directory to generate text)"
fi
